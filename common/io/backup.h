/* SPDX-License-Identifier: MIT */
/* What the controller and batonctl agree on about `backup`: the copy of the
 * database travels whole in one Response, so its size has a cap. */
#pragma once

#include "codec.h"

/* The codec refuses an envelope above CODEC_MAX_MESSAGE_SIZE, on both ends.
 * Around the bytes go the Response framing and the envelope (sender, times,
 * type, signature, key id): a few hundred bytes, so 16 KiB is ample room.
 * The broker's own limit (max_message_size, 4 MiB in baton's recommended
 * settings) is the codec's. */
#define BACKUP_MAX_SIZE (CODEC_MAX_MESSAGE_SIZE - 16u * 1024u)

/* Every SQLite database file starts with these 16 bytes. */
#define BACKUP_SQLITE_MAGIC "SQLite format 3"
#define BACKUP_SQLITE_HEADER_SIZE 100u
