/*
 * utility_hook.h — the DBA commands that must not meet the sync worker
 * (utility_hook.c); installed from _PG_init when preloaded.
 */
#ifndef M365SYNC_UTILITY_HOOK_H
#define M365SYNC_UTILITY_HOOK_H

extern void m365_install_utility_hook(void);

#endif							/* M365SYNC_UTILITY_HOOK_H */
