/* SPDX-License-Identifier: MIT */
/* A Response as batonctl receives it (on its direct reply-to queue), then
 * what batonctl does with it: the status, the JSON document most verbs
 * answer with (read with jansson as ctl-verbs.c does; every member must be
 * printable once control characters are masked), and `--json` output, which
 * is the message through pbjson and must read back as the same message
 * (checked for every accepted message). */
#include <stdlib.h>
#include <string.h>

#include "fuzz-wire.h"
#include "pbjson.h"
#include "rpc.pb-c.h"

/* ctl-verbs.c's ctl_sanitize(): what a table shows of a string. */
static void check_sanitized(const char *s) {
        _cleanup_free_ char *copy = strdup(strempty(s));

        if (!copy)
                return;
        for (char *p = copy; *p; p++)
                if (*p == '\t')
                        *p = ' ';
                else if ((unsigned char) *p < 0x20 || *p == 0x7f)
                        *p = '?';
        FUZZ_ASSERT(strlen(copy) == strlen(strempty(s)));
}

static void walk(json_t *j, unsigned depth) {
        const char *key;
        json_t *v;
        size_t i;

        FUZZ_ASSERT(depth < 4096);
        if (json_is_object(j))
                json_object_foreach(j, key, v) {
                        check_sanitized(key);
                        walk(v, depth + 1);
                }
        else if (json_is_array(j))
                json_array_foreach(j, i, v) walk(v, depth + 1);
        else if (json_is_string(j))
                check_sanitized(json_string_value(j));
}

static void drive(const CodecDecoded *d) {
        const Baton__V1__Response *resp = (const Baton__V1__Response *) d->body;
        json_error_t error;
        json_t *doc;

        FUZZ_ASSERT(protobuf_c_enum_descriptor_get_value(&baton__v1__status__descriptor,
                                                         (int) resp->status));
        switch (resp->result_case) {
        case BATON__V1__RESPONSE__RESULT_JSON:
                doc = json_loads(strempty(resp->json), JSON_REJECT_DUPLICATES, &error);
                if (doc) {
                        walk(doc, 0);
                        json_decref(doc);
                } else
                        FUZZ_ASSERT(error.text[0] != '\0');
                break;
        case BATON__V1__RESPONSE__RESULT_PONG:
                FUZZ_ASSERT(resp->pong);
                for (size_t i = 0; i < resp->pong->n_counters; i++)
                        check_sanitized(resp->pong->counters[i]->name);
                break;
        case BATON__V1__RESPONSE__RESULT_HOSTS:
                FUZZ_ASSERT(resp->hosts);
                for (size_t i = 0; i < resp->hosts->n_hosts; i++) {
                        FUZZ_ASSERT(resp->hosts->hosts[i]);
                        check_sanitized(resp->hosts->hosts[i]->host);
                        for (size_t k = 0; k < resp->hosts->hosts[i]->n_labels; k++)
                                check_sanitized(resp->hosts->hosts[i]->labels[k]);
                }
                break;
        case BATON__V1__RESPONSE__RESULT_BACKUP:
                FUZZ_ASSERT(resp->backup.len == 0 || resp->backup.data);
                break;
        default:
                break;
        }
        for (size_t i = 0; i < resp->n_alerts; i++)
                check_sanitized(resp->alerts[i]->summary);
        check_sanitized(resp->error);
}

const FuzzWireTarget fuzz_wire_target = {
        .rx = &fuzz_rx_ctl,
        .body = &baton__v1__response__descriptor,
        .drive = drive,
};

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
        return fuzz_wire_run(&fuzz_wire_target, data, size);
}
