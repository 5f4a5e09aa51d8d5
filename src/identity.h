/*
 * identity.h — the FlowAgent user the current transaction acts for
 * (identity.c), and the hooks of m365sync.flowagent_user that stamp each
 * value with its transaction.
 */
#ifndef M365SYNC_IDENTITY_H
#define M365SYNC_IDENTITY_H

#include "postgres.h"
#include "utils/guc.h"

extern char *m365_flowagent_user;

extern const char *m365_acting_user(void);
extern int	m365_act_for(const char *user);
extern void m365_act_for_done(int level);
extern void m365_identity_define_setting(void);
extern bool m365_flowagent_user_check(char **newval, void **extra, GucSource source);
extern void m365_flowagent_user_assign(const char *newval, void *extra);
extern bool m365_flowagent_user_placeholder_is_fresh(void);
extern void m365_flowagent_user_defining(bool defining, bool placeholder_fresh);

#endif							/* M365SYNC_IDENTITY_H */
