/*-------------------------------------------------------------------------
 *
 * enrollment.h
 *	  Internal declarations shared by the C files of the enrollment
 *	  extension: settings, error codes, crypto helpers and the identity of
 *	  the caller.
 *
 * src/enrollment.h
 *
 *-------------------------------------------------------------------------
 */
#ifndef ENROLLMENT_H
#define ENROLLMENT_H

#include "postgres.h"

#include <openssl/types.h>

#include "datatype/timestamp.h"
#include "utils/snapshot.h"
#include "token_format.h"

/*
 * SQLSTATEs of the extension's own error class "NR" (implementation-defined
 * class range).  errmsg() of these errors is the stable message key shown
 * in the comment, so clients can branch on either.
 */
#define ERRCODE_ENR_INVALID_TOKEN		MAKE_SQLSTATE('N','R','0','0','1')	/* invalid_token */
#define ERRCODE_ENR_TOKEN_EXPIRED		MAKE_SQLSTATE('N','R','0','0','2')	/* token_expired */
#define ERRCODE_ENR_TOKEN_REVOKED		MAKE_SQLSTATE('N','R','0','0','3')	/* token_revoked */
#define ERRCODE_ENR_TOKEN_EXHAUSTED		MAKE_SQLSTATE('N','R','0','0','4')	/* token_exhausted */
#define ERRCODE_ENR_CLUSTER_MISMATCH	MAKE_SQLSTATE('N','R','0','0','5')	/* cluster_mismatch */
#define ERRCODE_ENR_NODE_MISMATCH		MAKE_SQLSTATE('N','R','0','0','6')	/* node_mismatch */
#define ERRCODE_ENR_NODE_LIMIT_EXCEEDED	MAKE_SQLSTATE('N','R','0','0','7')	/* node_limit_exceeded */
#define ERRCODE_ENR_RATE_LIMITED		MAKE_SQLSTATE('N','R','0','0','8')	/* rate_limited */
#define ERRCODE_ENR_IP_POOL_EXHAUSTED	MAKE_SQLSTATE('N','R','0','0','9')	/* ip_pool_exhausted */
#define ERRCODE_ENR_API_KEY_NOT_FOUND	MAKE_SQLSTATE('N','R','0','1','0')	/* invalid_key */

/* Channel of NOTIFY payloads for state changes */
#define ENR_NOTIFY_CHANNEL	"enrollment_events"

/* Digest length of SHA-256 */
#define ENR_DIGEST_LEN	32

/* guc.c: settings */
extern char *enrollment_token_prefix;
extern char *enrollment_node_prefix;
extern bool enrollment_direct_writes;
extern bool enrollment_call_scan;
extern int	enrollment_once_ttl;		/* seconds */
extern int	enrollment_cluster_ttl;		/* seconds */
extern int	enrollment_max_ttl;			/* seconds */
extern char *enrollment_actor;
extern char *enrollment_tenant;
extern int	enrollment_hmac_window;		/* seconds */
extern int	enrollment_online_window;	/* seconds (the nodes view's online) */
extern char *enrollment_server_key_file;
extern char *enrollment_header_key_id;
extern char *enrollment_header_timestamp;
extern char *enrollment_header_nonce;
extern char *enrollment_header_signature;
extern char *enrollment_database_names;
#define ENR_MAX_DATABASES	64		/* names in enrollment.database_names */
extern int	enrollment_worker_interval;		/* seconds */
extern int	enrollment_token_retention;		/* seconds */
extern int	enrollment_worker_batch;
extern void enrollment_guc_init(bool preloading);

/* call_scan.c */
extern void enrollment_call_scan_init(void);

/* worker.c */
extern void enrollment_worker_register(void);

/* crypto.c: OpenSSL-backed primitives */
extern void enr_random_bytes(void *buf, size_t len);
extern void enr_sha256(const void *data, size_t len, uint8 out[ENR_DIGEST_LEN]);
extern bool enr_digest_equal(const uint8 *a, const uint8 *b, size_t len);
extern void enr_secure_zero(void *buf, size_t len);
extern void enr_hmac_sha256(const uint8 *key, size_t keylen, const void *data, size_t len,
							uint8 out[ENR_DIGEST_LEN]);

extern EVP_MAC_CTX *enr_hmac_key_new(const uint8 *key, size_t keylen);
extern void enr_hmac_keyed(EVP_MAC_CTX *ctx, const void *data, size_t len,
						   uint8 out[ENR_DIGEST_LEN]);
extern void enr_hmac_key_free(EVP_MAC_CTX *ctx);

#define ENR_AEAD_KEY_LEN	32
#define ENR_AEAD_IV_LEN		12
#define ENR_AEAD_TAG_LEN	16
#define ENR_SEALED_LEN(n)	(ENR_AEAD_IV_LEN + (n) + ENR_AEAD_TAG_LEN)
extern void enr_aes_gcm_seal(const uint8 key[ENR_AEAD_KEY_LEN], const uint8 *aad, size_t aadlen,
							 const uint8 *plain, size_t len, uint8 *sealed);
extern bool enr_aes_gcm_open(const uint8 key[ENR_AEAD_KEY_LEN], const uint8 *aad, size_t aadlen,
							 const uint8 *sealed, size_t len, uint8 *plain);

/* uuid_v7.c: random UUIDs (version 4 or 7 bits set) */
struct pg_uuid_t;
extern struct pg_uuid_t *enr_random_uuid(int version);

/* credential.c: issuing and checking credential strings */
typedef struct IssuedCredential
{
	char		text[TOKEN_MAX_LEN + 1];	/* the plaintext, shown once */
	int64		public_id;					/* lookup key, stored */
	uint8		digest[ENR_DIGEST_LEN];		/* SHA-256 of text, stored */
} IssuedCredential;

extern void enr_issue_credential(const char *prefix, bool time_ordered,
								 IssuedCredential *cred);
extern void enr_wipe_credential(IssuedCredential *cred);
extern TokenParseResult enr_parse_presented(text *presented, int64 *public_id,
											uint8 digest[ENR_DIGEST_LEN]);
extern bytea *enr_digest_bytea(const uint8 digest[ENR_DIGEST_LEN]);
extern bool enr_digest_matches(bytea *stored, const uint8 digest[ENR_DIGEST_LEN]);

/* node_limit.c: a tenant's license node limit */
extern void enr_check_node_limit(Datum tenant, const char *token_public_part);
extern void enr_warn_node_capacity(Datum tenant);
extern bool enr_node_limit_reached(Datum tenant);

/* approval.c: whether a new node starts active or waits for approval */
typedef struct NodeApproval
{
	bool		manual;			/* the tenant approves new nodes by hand */
	bool		by_rule;		/* an auto-approve rule admitted the node */
	Datum		rule_id;		/* that rule (uuid), when by_rule */
} NodeApproval;

extern void enr_approve_new_node(Datum tenant, text *cluster_id, text *node_role,
								 NodeApproval *approval);

/* placement.c: a new node's group and private address (0.7.0) */
extern void enr_ensure_group(Datum tenant, text *node_group);
extern void enr_await_pool_change(Datum tenant);
extern bool enr_allocate_address(Datum tenant, const char *token_public_part, Datum *address);
extern void enr_record_address(Datum tenant, Datum address, Datum node_id);

/* node_count.c: nodes counted by direct index scans, for the limits */
extern int64 enr_count_tenant_nodes(Datum tenant, Snapshot snapshot);
extern int64 enr_sum_node_changes(Datum tenant, Snapshot snapshot);
extern int64 enr_count_token_nodes_since(Datum token_id, TimestampTz since, Snapshot snapshot);

/* limits_cache.c: whether any node limit or rate exists, per backend */
extern bool enr_any_node_limit(void);
extern bool enr_any_manual_approval(void);
extern bool enr_any_token_rate(void);
extern bool enr_any_ip_pool(void);
extern Oid	enr_node_record_relid(void);

/* rate_limit.c: enrollments per hour of a reusable token */
extern int32 enr_token_rate(Datum token_id);
extern int64 enr_enrollments_last_hour(Datum token_id, TimestampTz now);
extern void enr_rate_limited(const char *token_public_part, int32 rate, int64 recent) pg_attribute_noreturn();

/* identity.c: who is acting, for which tenant */
extern char *enr_current_actor(void);
extern char *enr_current_tenant(void);
extern bool enr_is_current_tenant(Datum tenant);
extern int	enr_role_rank(const char *role);
extern const char *enr_role_name(int rank);
extern bool enr_caller_is_dba(void);
extern void enr_require_dba(const char *why);
extern int	enr_member_rank(Datum tenant, Datum identity);
extern int	enr_caller_rank(void);
extern void enr_require_role(const char *min_role, const char *what);
extern void enr_grant_audit_read(const char *tenant);

/* shmem.c: shared state (needs shared_preload_libraries) */
typedef enum NonceVerdict
{
	NONCE_ACCEPTED,
	NONCE_REUSED,
	NONCE_CACHE_FULL,
	NONCE_STALE					/* a sweep forgot nonces of that age, or another
								 * server start may have accepted it: stale */
} NonceVerdict;

/* counters shown by enrollment.stats; the reason lists are fixed */
typedef enum EnrollOutcome
{
	ENROLL_OK,
	ENROLL_INVALID_TOKEN,
	ENROLL_TOKEN_EXPIRED,
	ENROLL_TOKEN_REVOKED,
	ENROLL_TOKEN_EXHAUSTED,
	ENROLL_CLUSTER_MISMATCH,
	ENROLL_NODE_MISMATCH,
	ENROLL_NODE_LIMIT_EXCEEDED,
	ENROLL_RATE_LIMITED,
	ENROLL_IP_POOL_EXHAUSTED,
	ENROLL_WRITTEN_DIRECTLY,	/* not an outcome: of the ok ones, how many without SQL */
	ENROLL_NUM_OUTCOMES
} EnrollOutcome;

typedef enum VerifyOutcome
{
	VERIFY_OK,
	VERIFY_MISSING_HEADERS,
	VERIFY_INVALID_KEY,
	VERIFY_INVALID_TIMESTAMP,
	VERIFY_INVALID_NONCE,
	VERIFY_MALFORMED_SIGNATURE,
	VERIFY_STALE_TIMESTAMP,
	VERIFY_BAD_SIGNATURE,
	VERIFY_NONCE_REUSED,
	VERIFY_NONCE_CACHE_FULL,
	VERIFY_INSUFFICIENT_SCOPE,
	VERIFY_NUM_OUTCOMES
} VerifyOutcome;

typedef enum WorkerCounter
{
	WORKER_RUNS,
	WORKER_TOKENS_EXPIRED,
	WORKER_TOKENS_PURGED,
	WORKER_NONCES_FORGOTTEN,
	WORKER_STAMPS_WRITTEN,
	WORKER_USES_FOLDED,
	WORKER_NODE_CHANGES_FOLDED,
	WORKER_NUM_COUNTERS
} WorkerCounter;

extern const char *const enroll_outcome_names[ENROLL_NUM_OUTCOMES];
extern const char *const verify_outcome_names[VERIFY_NUM_OUTCOMES];
extern void enr_count_enroll(EnrollOutcome o);
extern void enr_count_verify(VerifyOutcome o);
extern void enr_count_worker(WorkerCounter c, uint64 n);
extern void enr_note_worker_run(TimestampTz end, int64 duration_us);
extern int64 enr_nonce_sweep(int64 oldest_valid);
extern void enr_counters_read(uint64 *enroll, uint64 *verify, uint64 *worker,
							  TimestampTz *last_run_end, int64 *last_run_us, TimestampTz *reset_at);
extern void enr_counters_reset(void);
/* coalesced stamps in shared memory, written to their rows by the worker */
typedef enum EnrStampKind
{
	ENR_STAMP_API_KEY,			/* api_key.last_used_at, by key id */
	ENR_STAMP_NODE,				/* node_record.last_seen_at, by credential public id */
	ENR_STAMP_KINDS
} EnrStampKind;

extern void enr_stamp_note(EnrStampKind kind, uint64 key_id, TimestampTz stamp);
extern TimestampTz enr_stamp_get(EnrStampKind kind, uint64 key_id);
extern int	enr_stamp_collect(EnrStampKind kind, uint64 *key_ids, TimestampTz *stamps, int max,
							  const uint64 *exclude, int nexclude);
extern void enr_stamp_forget(EnrStampKind kind, const uint64 *key_ids, const TimestampTz *stamps, int n);
extern int	enr_compare_uint64(const void *a, const void *b);

extern int	enrollment_max_nonces;
extern int	enrollment_last_used_slots;
extern int	enrollment_last_seen_slots;
extern void enrollment_shmem_init(void);
extern bool enr_shmem_available(void);
extern void enr_require_shmem(void);
extern int64 enr_replay_floor(void);
extern void enr_replay_floor_raise(int64 f);
extern uint64 enr_server_instance(void);

/* replay_horizon.c: the horizon replicated through a row of each database */
#define ENR_REPLAY_HORIZON_STEP 5	/* seconds reserved ahead per write */
extern void enr_replay_horizon_absorb(void);
extern bool enr_replay_horizon_cover(int64 ts, int64 now);
extern NonceVerdict enr_nonce_check_and_remember(uint64 key_id, const char *nonce, size_t nonce_len,
												 int64 ts, int64 now, int window);
extern int64 enr_nonces_held(void);
extern int	enr_nonce_partitions(void);

/* server_key.c: the key that seals stored secrets, outside the database */
typedef struct ServerKey
{
	int			version;
	uint8		key[ENR_AEAD_KEY_LEN];
} ServerKey;

extern const ServerKey *enr_server_key_current(void);
extern const ServerKey *enr_server_key_version(int version);
extern int	enr_server_key_rotate(void);

/* api_key.c: keys, scopes, sealed secrets */
extern int	enr_scope_bit(const char *name, size_t len);
extern void enr_unknown_scope_error(const char *argname) pg_attribute_noreturn();
extern bool enr_open_secret(uint64 key_id, bytea *sealed, int version, uint8 secret[32]);
extern char *enr_key_id_text(uint64 key_id);

/* hmac_key_cache.c: HMAC under a stored secret, keyed contexts kept per backend */
extern bool enr_api_key_hmac(uint64 key_id, bytea *sealed, int version,
							 const void *msg, size_t len, uint8 out[ENR_DIGEST_LEN]);
extern void enr_api_key_forget(uint64 key_id);

/* spi.c: saved plans and small helpers around SPI */
#include "executor/spi.h"

typedef struct EnrPlan
{
	const char *sql;
	int			nargs;
	Oid			argtypes[20];
	SPIPlanPtr	plan;			/* prepared on first use, kept for the backend's life */
} EnrPlan;

extern SPIPlanPtr enr_prepare(EnrPlan *p);
extern int	enr_execute(EnrPlan *p, Datum *values, const char *nulls, bool read_only, long count);
extern TupleDesc enr_result_tupdesc(FunctionCallInfo fcinfo);
extern Datum enr_getattr(int row, int col, bool *isnull);
extern text *enr_text_or_null(Datum d, bool isnull);
extern bool enr_text_equal(text *a, text *b);

/*
 * Does a text value equal the C string s?  Inline: its callers compare with
 * literals (a status, a kind), whose length the compiler then knows.
 */
static inline bool
enr_text_is(text *t, const char *s)
{
	size_t		len = strlen(s);

	return VARSIZE_ANY_EXHDR(t) == len && memcmp(VARDATA_ANY(t), s, len) == 0;
}

extern void enr_require_arg(FunctionCallInfo fcinfo, int argno, const char *name);
extern void enr_check_text_arg(text *t, const char *name, int maxchars, bool allow_empty);

/* call_scan.c: a verdict function's row, to the scan calling it or as a datum */
extern Datum enr_return_row(FunctionCallInfo fcinfo, TupleDesc tupdesc,
							 Datum *values, bool *nulls);

/*
 * Constant-time checking under Valgrind (a build with "make VALGRIND=1", run
 * by scripts/valgrind): bytes derived from a secret are marked undefined, so
 * Memcheck reports any branch or memory address that depends on them; the
 * outcome of a comparison, which is public, is marked defined again before
 * anything acts on it.  Both are no-ops in a normal build.
 */
#ifdef ENR_VALGRIND
#include <valgrind/memcheck.h>
#define ENR_SECRET(p, n)		VALGRIND_MAKE_MEM_UNDEFINED((p), (n))
#define ENR_DECLASSIFY(p, n)	VALGRIND_MAKE_MEM_DEFINED((p), (n))
#else
#define ENR_SECRET(p, n)		((void) 0)
#define ENR_DECLASSIFY(p, n)	((void) 0)
#endif

/* row_rules.c: the rules CHECK constraints of enrollment_token and node_record */
extern PGDLLEXPORT Datum enrollment_token_rules(PG_FUNCTION_ARGS);
extern PGDLLEXPORT Datum enrollment_node_record_rules(PG_FUNCTION_ARGS);

/* Shorthand for the start of the current statement, used for expiry checks */
#define enr_now() GetCurrentStatementStartTimestamp()

#endif							/* ENROLLMENT_H */
