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

/*
 * The node is read by the public id of its secret, without SPI (probe.c):
 * the key, the columns of node_identity in its order, and the digest last.
 * Before ALTER EXTENSION UPDATE to 0.7.0 the table and the type have no
 * placement (node_group, os, private_ip): node_by_secret_v6.
 */
#define NODE_IDENTITY_COLS "node_id", "tenant", "name", "role", "cluster_id", "status", "enrolled_at"

static EnrProbeTable node_by_secret = {
	.relname = "node_record",
	.indexname = "node_record_secret_public_id_key",
	.eqproc = F_INT8EQ,
	.ncols = 12,
	.cols = {"secret_public_id", NODE_IDENTITY_COLS, "node_group", "os", "private_ip", "secret_hash"}
};

static EnrProbeTable node_by_secret_v6 = {
	.relname = "node_record",
	.indexname = "node_record_secret_public_id_key",
	.eqproc = F_INT8EQ,
	.ncols = 9,
	.cols = {"secret_public_id", NODE_IDENTITY_COLS, "secret_hash"}
};

/* where the columns are among the probe's values */
#define NI_TENANT 2
#define NI_STATUS 6

/*
 * enrollment.authenticate_node(node_secret text) RETURNS SETOF node_identity:
 *	(node_id, tenant, name, role, cluster_id, status, enrolled_at, and since
 *	 0.7.0 node_group, os, private_ip)
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
		bool		placed = enr_has_node_placement();
		EnrProbeTable *t = placed ? &node_by_secret : &node_by_secret_v6;
		Datum		v[12];
		bool		n[12];

		/* the result type of the installed release: 10 columns, or 7 before 0.7.0 */
		if (rsinfo->setDesc->natts != t->ncols - 2)
			ereport(ERROR,
					(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
					 errmsg("the tables of extension \"enrollment\" do not match its functions"),
					 errdetail("node_identity has %d columns, and node_record %s the placement of 0.7.0.",
							   rsinfo->setDesc->natts, placed ? "has" : "has not"),
					 errhint("Run ALTER EXTENSION enrollment UPDATE.")));

		/* only an active node of the current tenant authenticates */
		if (enr_probe(t, Int64GetDatum(public_id), v, n) &&
			enr_digest_matches(DatumGetByteaPP(v[t->ncols - 1]), digest) &&
			enr_is_current_tenant(v[NI_TENANT]) &&
			strcmp(TextDatumGetCString(v[NI_STATUS]), "active") == 0)
		{
			/* tuplestore_putvalues copies into the tuplestore's own context */
			tuplestore_putvalues(rsinfo->setResult, rsinfo->setDesc, &v[1], &n[1]);
			/* seen now: the worker writes it to last_seen_at (shmem.c) */
			enr_stamp_note(ENR_STAMP_NODE, (uint64) public_id, GetCurrentTimestamp());
		}
	}
	return (Datum) 0;
}
