/* Poison header: the pure cores are built with this directory first on the
 * include path, so including an I/O library there fails to build. */
#error "a pure core (controller/core, agent/core, common pure helpers) must not include <uv.h>"
