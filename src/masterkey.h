/*
 * masterkey.h — the master keys of m365sync.key_file inside a backend
 * (masterkey.c), for keyring.c only. Call inside a transaction.
 */
#ifndef M365SYNC_MASTERKEY_H
#define M365SYNC_MASTERKEY_H

#include "keyfile.h"

/*
 * The keys of m365sync.key_file, loaded or refreshed as needed; keys[0] is
 * the current one. ERROR when the file is unset, missing, readable by
 * others, inside the data directory or malformed.
 */
extern const M365KeySet *m365_master_keys(void);

/* Make the next m365_master_keys() look at the file again (transaction end). */
extern void m365_master_keys_recheck(void);

/* Wipe every master key (on any problem with the file, and at backend exit). */
extern void m365_master_keys_forget(void);

/*
 * Moves whenever the master keys are wiped: the data keys unwrapped under
 * them must go too, and keyring.c checks this to know (masterkey.c never
 * reaches into keyring.c's cache).
 */
extern uint64 m365_master_keys_generation(void);

#endif							/* M365SYNC_MASTERKEY_H */
