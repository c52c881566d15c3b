/*-------------------------------------------------------------------------
 *
 * enrollment.c
 *	  Module entry point of the enrollment extension.
 *
 * _PG_init only dispatches: it defines the settings, installs the planner
 * hook of the verdict functions' scan (call_scan.c) and, when the library
 * is preloaded (shared_preload_libraries), asks for shared memory and
 * registers the maintenance workers.  Token
 * functions work either way; request verification needs the preload.
 *
 * src/enrollment.c
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "fmgr.h"
#include "miscadmin.h"

#include "enrollment.h"

PG_MODULE_MAGIC;

void		_PG_init(void);

void
_PG_init(void)
{
	enrollment_guc_init(process_shared_preload_libraries_in_progress);
	enrollment_call_scan_init();
	if (!process_shared_preload_libraries_in_progress)
		return;
	enrollment_shmem_init();
	enrollment_worker_register();
}
