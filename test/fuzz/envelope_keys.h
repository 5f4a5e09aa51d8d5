/*
 * envelope_keys.h — the fixed test keys of the envelope fuzz target and its
 * seed generator (gen_envelope_seeds.c). Test material only: never a key
 * of any installation.
 */
#ifndef M365SYNC_FUZZ_ENVELOPE_KEYS_H
#define M365SYNC_FUZZ_ENVELOPE_KEYS_H

#include <stdint.h>

#include "crypto.h"

#define ACCOUNT		7
#define GENERATION	3
#define ROW			9

static const uint8_t data_key[M365_KEY_BYTES] = {
	0x11, 0x11, 0x11, 0x11, 0x11, 0x11, 0x11, 0x11, 0x11, 0x11, 0x11, 0x11, 0x11, 0x11, 0x11, 0x11,
	0x11, 0x11, 0x11, 0x11, 0x11, 0x11, 0x11, 0x11, 0x11, 0x11, 0x11, 0x11, 0x11, 0x11, 0x11, 0x11};

static const char keyfile_text[] =
"k2:3333333333333333333333333333333333333333333333333333333333333333\n"
"k1:2222222222222222222222222222222222222222222222222222222222222222\n";

#endif							/* M365SYNC_FUZZ_ENVELOPE_KEYS_H */
