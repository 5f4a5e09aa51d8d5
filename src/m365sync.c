/*
 * m365sync.c — module entry point: _PG_init defines the settings
 * (settings.c) and, when loaded through shared_preload_libraries, registers
 * the launcher (which runs the sync worker) and installs the utility hook;
 * sets cJSON's allocation hooks (json_arena.c).
 *
 * Nothing else lives here. Loaded without preload (a plain CREATE EXTENSION
 * and a function call), every SQL function works and syncing is driven by
 * m365sync.sync().
 */
#include "postgres.h"

#include "fmgr.h"
#include "miscadmin.h"

#include "json_arena.h"
#include "launcher.h"
#include "settings.h"
#include "utility_hook.h"

PG_MODULE_MAGIC;

void		_PG_init(void);

void
_PG_init(void)
{
	m365_define_settings();
	/* cJSON's allocator: arenas for delta pages, malloc for the rest */
	m365_json_arena_install();

	/*
	 * Preloaded: the launcher starts the sync worker, and every backend sees
	 * the DBA commands that must not meet it (DROP DATABASE, ALTER
	 * EXTENSION UPDATE, ...).
	 */
	if (process_shared_preload_libraries_in_progress)
	{
		m365_register_launcher();
		m365_install_utility_hook();
	}
}
