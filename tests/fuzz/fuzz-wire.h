/* SPDX-License-Identifier: MIT */
/* What the wire-message targets share: a fixed test signing key, the
 * receivers (which body types each party accepts, and whether it requires
 * the controller's signature), a decode exactly as that receiver does it
 * followed by the checks every accepted message must pass, and in libFuzzer
 * builds a mutator that keeps inputs signed envelopes while it mutates the
 * body inside, so the fuzzer gets past the signature check. */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "codec.h"
#include "fuzz.h"
#include "sign.h"

/* The agent under test, and the host the seeds are for. */
#define FUZZ_HOST "host-a"
/* Its manage_units in the seeds and in half of the planning runs. */
#define FUZZ_MANAGE_UNITS "gateway@*.service audio@*.service core.service"
/* Signing seed of the test key (exactly SIGN_SEED_BYTES; not a secret). */
#define FUZZ_KEY_SEED "baton-fuzz-test-key-not-a-secret"
/* The clock the targets and the seeds agree on (2023-11-14T22:13:20Z). */
#define FUZZ_NOW_US UINT64_C(1700000000000000)
/* The agent's default command_max_age: older or newer commands are refused. */
#define FUZZ_COMMAND_MAX_AGE_US (600 * USEC_PER_SEC)

/* The controller's key as every agent target knows it. The first call also
 * checks that fuzz_sign_envelope() signs as codec_encode() does. */
const SignKey *fuzz_test_key(void);

/* Signs `env` (its body, and whatever else the protocol covers) as
 * codec_encode() would, setting its signature (into `sig`) and key_id. */
int fuzz_sign_envelope(Baton__V1__Envelope *env, const SignKey *key,
                       uint8_t sig[SIGN_SIGNATURE_BYTES]);

typedef struct FuzzReceiver {
        const char *name;
        const ProtobufCMessageDescriptor *const *types;
        size_t n_types;
        bool verify; /* requires a signature by fuzz_test_key() */
} FuzzReceiver;

/* The agent (Placement, Restart; signed), the controller's status consumer
 * (Heartbeat, UnitEvent, ShardReport, CommandResult; its own markers apart)
 * and RPC queue (Request), batonctl's reply queue (Response) and `batonctl
 * watch` (Alert, Event): the same lists their code passes to codec_decode(). */
extern const FuzzReceiver fuzz_rx_agent;
extern const FuzzReceiver fuzz_rx_status;
extern const FuzzReceiver fuzz_rx_marker;
extern const FuzzReceiver fuzz_rx_rpc;
extern const FuzzReceiver fuzz_rx_ctl;
extern const FuzzReceiver fuzz_rx_watch;
extern const FuzzReceiver *const fuzz_receivers[];
extern const size_t fuzz_n_receivers;

typedef struct FuzzWireTarget {
        const FuzzReceiver *rx;
        /* The body type this target drives further; other types the
         * receiver accepts get the generic checks only. */
        const ProtobufCMessageDescriptor *body;
        /* Hands the decoded message to the pure code its receiver hands it
         * to, and checks what that code promises. */
        void (*drive)(const CodecDecoded *d);
} FuzzWireTarget;

/* Defined by each wire target; the libFuzzer mutator reads it. */
extern const FuzzWireTarget fuzz_wire_target;

/* The receiver's codec_decode() on the bytes; on success the generic checks
 * (see fuzz-wire.c), then t->drive() for a body of type t->body. */
int fuzz_wire_run(const FuzzWireTarget *t, const uint8_t *data, size_t size);

/* The generic checks of an accepted message, for targets that decode
 * themselves. */
void fuzz_wire_check_accepted(const FuzzReceiver *rx, const CodecDecoded *d);

/* A message as JSON (pbjson) and back must be the same message. */
void fuzz_check_pbjson(const ProtobufCMessage *m);
