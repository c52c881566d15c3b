/*-------------------------------------------------------------------------
 *
 * enrollment.c
 *	  Module entry point of the enrollment extension.
 *
 * _PG_init only dispatches: it defines the settings.  The library works
 * both when preloaded (shared_preload_libraries) and when loaded on first
 * use by a session.
 *
 * src/enrollment.c
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "fmgr.h"

#include "enrollment.h"

PG_MODULE_MAGIC;

void		_PG_init(void);

void
_PG_init(void)
{
	enrollment_guc_init();
}
