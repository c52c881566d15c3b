/*-------------------------------------------------------------------------
 *
 * node.c
 *	  Authenticating an enrolled node by its credential.
 *
 * Read-only (it works on a standby): parse the credential, look the node
 * up by the credential's public id through its unique index, compare the
 * digest in constant time.  Unknown, wrong and removed all return no row,
 * and so does a node that waits for an operator's approval (0.7.0).
 *
 * A node that authenticates is seen (0.7.0): the time is noted in shared
 * memory, without writing its row, and the maintenance worker writes the
 * latest time noted to node_record.last_seen_at every round (worker.c), as
 * it does the last-used stamps of API keys.
 *
 * src/node.c
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "catalog/pg_type.h"
#include "fmgr.h"
#include "funcapi.h"
#include "utils/builtins.h"
#include "utils/fmgroids.h"
#include "utils/timestamp.h"
#include "utils/tuplestore.h"

#include "enrollment.h"
#include "probe.h"

PG_FUNCTION_INFO_V1(enrollment_authenticate_node);

/* The node is read by the public id of its secret, without SPI (probe.c) */
static EnrProbeTable node_by_secret = {
	.relname = "node_record",
	.indexname = "node_record_secret_public_id_key",
	.eqproc = F_INT8EQ,
	.ncols = 9,
	.cols = {"secret_public_id", "node_id", "tenant", "name", "role", "cluster_id",
	"status", "enrolled_at", "secret_hash"}
};

/*
 * enrollment.authenticate_node(node_secret text)
 *	RETURNS SETOF (node_id, tenant, name, role, cluster_id, status, enrolled_at)
 */
Datum
enrollment_authenticate_node(PG_FUNCTION_ARGS)
{
	ReturnSetInfo *rsinfo = (ReturnSetInfo *) fcinfo->resultinfo;
	int64		public_id;
	uint8		digest[ENR_DIGEST_LEN];

	InitMaterializedSRF(fcinfo, 0);

	if (PG_ARGISNULL(0) ||
		enr_parse_presented(PG_GETARG_TEXT_PP(0), &public_id, digest) != TOKEN_OK)
		return (Datum) 0;

	{
		Datum		v[9];
		bool		n[9];

		/* only an active node of the current tenant authenticates */
		if (enr_probe(&node_by_secret, Int64GetDatum(public_id), v, n) &&
			enr_digest_matches(DatumGetByteaPP(v[8]), digest) &&
			enr_is_current_tenant(v[2]) &&
			strcmp(TextDatumGetCString(v[6]), "active") == 0)
		{
			/* tuplestore_putvalues copies into the tuplestore's own context */
			tuplestore_putvalues(rsinfo->setResult, rsinfo->setDesc, &v[1], &n[1]);
			/* seen now: the worker writes it to last_seen_at (shmem.c) */
			enr_stamp_note(ENR_STAMP_NODE, (uint64) public_id, GetCurrentTimestamp());
		}
	}
	return (Datum) 0;
}
