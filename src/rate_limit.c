/*-------------------------------------------------------------------------
 *
 * rate_limit.c
 *	  Enrollments per hour of a reusable token (enrollment.set_token_rate,
 *	  0.7.0): an enrollment beyond the token's rate is refused with
 *	  rate_limited.
 *
 * A rate of K admits at most K enrollments through the token in any hour:
 * its nodes whose enrolled_at lies in the hour before the enrollment's own
 * time, the new one included, may be at most K.  A rate of 0 switches the
 * token off without revoking it.
 *
 * Exactness.  An enrollment through a token with a rate never appends its
 * use (enroll.c, appends_use): it counts it in the token row, which it
 * locks until the commit.  Only then, under that lock, does it count the
 * token's nodes of the last hour, under the newest snapshot rather than
 * the transaction's, so it sees the node of whoever held the lock before
 * it; the node it wrote itself is among them.  N concurrent enrollments
 * against K free places therefore succeed exactly min(N, K) times.
 *
 * The rate is read without a lock under the newest snapshot (one probe by
 * the token's id, for reusable tokens only, and only where some token has
 * a rate: limits_cache.c) when the enrollment starts, to choose how its
 * use is recorded, and again once the token row is locked, to check it.
 * set_token_rate locks the token row as a count of its use does, so once
 * an enrollment holds that lock, no rate can change before it commits, and
 * the second read sees the one in force.  An enrollment that appended its
 * use under a share lock (no rate when it started) and finds a rate then
 * fails with a serialization failure: it is to be tried again.
 *
 * Before ALTER EXTENSION UPDATE to 0.7.0 the table does not exist and no
 * token has a rate.
 *
 * src/rate_limit.c
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/xact.h"
#include "utils/fmgroids.h"
#include "utils/snapmgr.h"
#include "utils/timestamp.h"

#include "enrollment.h"
#include "probe.h"

static EnrProbeTable rate_by_token = {
	.relname = "token_rate",
	.indexname = "token_rate_pkey",
	.eqproc = F_UUID_EQ,
	.ncols = 2,
	.cols = {"token_id", "max_per_hour"}
};

/*
 * The enrollments per hour a token allows, or -1 for no limit.  Only
 * reusable tokens have one; the caller asks for those alone.
 */
int32
enr_token_rate(Datum token_id)
{
	Datum		v[2];
	bool		n[2];

	if (!enr_any_token_rate() || !enr_probe_newest(&rate_by_token, token_id, v, n))
		return -1;
	return DatumGetInt32(v[1]);
}

/*
 * The token's nodes enrolled in the hour before now, under the newest
 * snapshot (this transaction's own node too)
 */
int64
enr_enrollments_last_hour(Datum token_id, TimestampTz now)
{
	Snapshot	snapshot;
	int64		n;

	CommandCounterIncrement();
	snapshot = RegisterSnapshot(GetLatestSnapshot());
	n = enr_count_token_nodes_since(token_id, now - USECS_PER_HOUR, snapshot);
	UnregisterSnapshot(snapshot);
	return n;
}

/*
 * Raise rate_limited for a token whose rate is used up: recent is the count
 * of its enrollments in the last hour, this one excluded.
 */
void
enr_rate_limited(const char *token_public_part, int32 rate, int64 recent)
{
	enr_count_enroll(ENROLL_RATE_LIMITED);
	if (rate == 0)
		ereport(ERROR,
				(errcode(ERRCODE_ENR_RATE_LIMITED),
				 errmsg("rate_limited"),
				 errdetail("Token %s is switched off: it allows no enrollments per hour.",
						   token_public_part),
				 errhint("Ask an operator to set its rate (enrollment.set_token_rate).")));
	ereport(ERROR,
			(errcode(ERRCODE_ENR_RATE_LIMITED),
			 errmsg("rate_limited"),
			 errdetail("Token %s allows %d enrollments per hour and enrolled " INT64_FORMAT
					   " in the last hour.", token_public_part, rate, recent),
			 errhint("Try again later, or ask an operator to raise its rate (enrollment.set_token_rate).")));
}
