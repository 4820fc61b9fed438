/* SPDX-License-Identifier: MIT */
/* The [broker] section every program shares, declared once. A config struct
 * embeds BrokerSettings and its option table uses BROKER_CONFIG_OPTIONS(). */
#pragma once

#include <stddef.h>

#include "broker.h"
#include "config.h"

typedef struct BrokerSettings {
        char *url;
        char *ca_file;
        usec_t heartbeat;
} BrokerSettings;

int broker_settings_validate_url(const void *field, char **ret_error);

#define BROKER_CONFIG_OPTIONS(type, member)                                                        \
        { "broker",                                                                                \
          "url",                                                                                   \
          CONFIG_STRING,                                                                           \
          offsetof(type, member.url),                                                              \
          NULL,                                                                                    \
          0,                                                                                       \
          0,                                                                                       \
          CONFIG_REQUIRED | CONFIG_SECRET,                                                         \
          broker_settings_validate_url,                                                            \
          "amqp[s]://user:pass@host:port/vhost" },                                                 \
                { "broker", "ca_file", CONFIG_STRING, offsetof(type, member.ca_file), NULL, 0,     \
                  0,        0,         NULL,          "CA bundle for amqps" },                     \
        {                                                                                          \
                "broker", "heartbeat", CONFIG_DURATION, offsetof(type, member.heartbeat), "10s",   \
                        USEC_PER_SEC, 300 * USEC_PER_SEC, 0, NULL,                                 \
                        "AMQP heartbeat (whole seconds)"                                           \
        }

/* Fills a BrokerConfig from the settings (pointers borrowed). */
void broker_settings_apply(const BrokerSettings *s, BrokerConfig *c);
