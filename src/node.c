/*-------------------------------------------------------------------------
 *
 * node.c
 *	  Authenticating an enrolled node by its credential.
 *
 * Read-only (it works on a standby): parse the credential, look the node
 * up by the credential's public id through its unique index, compare the
 * digest in constant time.  Unknown, wrong and removed all return no row.
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
#include "utils/tuplestore.h"

#include "enrollment.h"

PG_FUNCTION_INFO_V1(enrollment_authenticate_node);

static EnrPlan node_by_secret_plan = {
	.sql = "SELECT n.node_id, n.tenant, n.name, n.role, n.cluster_id, n.status,"
	"       n.enrolled_at, n.secret_hash"
	"  FROM enrollment.node_record AS n"
	" WHERE n.secret_public_id = $1 AND n.status <> 'removed'",
	.nargs = 1,
	.argtypes = {INT8OID}
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

	SPI_connect();
	{
		Datum		a[1] = {Int64GetDatum(public_id)};
		bool		isnull;

		enr_execute(&node_by_secret_plan, a, NULL, true, 1);
		if (SPI_processed == 1 &&
			enr_digest_matches(DatumGetByteaPP(enr_getattr(0, 8, &isnull)), digest))
		{
			Datum		values[7];
			bool		nulls[7];

			for (int i = 0; i < 7; i++)
				values[i] = enr_getattr(0, i + 1, &nulls[i]);
			/* tuplestore_putvalues copies into the tuplestore's own context */
			tuplestore_putvalues(rsinfo->setResult, rsinfo->setDesc, values, nulls);
		}
	}
	SPI_finish();
	return (Datum) 0;
}
