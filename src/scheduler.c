/*
 * scheduler.c — which account is due, and running its round.
 *
 * Called by the worker once per wake-up inside the worker's round memory
 * context. Until the pull capability lands there is nothing to run: the
 * worker just sleeps for the sync interval.
 */
#include "postgres.h"

#include "m365sync.h"
#include "worker.h"

long
m365_worker_round(void)
{
	return (long) m365_sync_interval_s * 1000L;
}
