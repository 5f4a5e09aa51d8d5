/*
 * scheduler.h — transaction steps of a worker round (scheduler.c).
 */
#ifndef M365SYNC_SCHEDULER_H
#define M365SYNC_SCHEDULER_H

/*
 * Commit the current transaction and start the next one, staying in the
 * caller's memory context (which must not be a transaction context: the
 * worker keeps its round state in the round context across commits).
 */
extern void m365_commit_and_continue(void);

#endif							/* M365SYNC_SCHEDULER_H */
