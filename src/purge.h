/*
 * purge.h — erasing a FlowAgent user (purge.c), for purge_user() and for
 * disconnect(). Crypto-shredding: the user's subscriptions at Microsoft go
 * first, then the data keys, then the rows, all in the caller's transaction.
 */
#ifndef M365SYNC_PURGE_H
#define M365SYNC_PURGE_H

#include "postgres.h"

/* Erase every account of flowagent_user; returns how many accounts there were. */
extern int	m365_purge_user(const char *flowagent_user);

#endif							/* M365SYNC_PURGE_H */
