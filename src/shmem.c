/*-------------------------------------------------------------------------
 *
 * shmem.c
 *	  Shared memory of the enrollment extension: the nonce cache that stops
 *	  request replays, the replay floor and horizon that keep it sound
 *	  across restarts, crashes and promotion, and coalesced stamps: when
 *	  each API key was last used, and each node last seen (0.7.0).
 *
 * Replay protection.  An accepted (key, nonce) is remembered in a fixed-size
 * hash table until its timestamp leaves the acceptance window.  Shared
 * memory does not survive a restart, so two more values make a restart
 * safe without writing a row per request:
 *
 *	- the horizon H: every accepted timestamp is <= H.  H lives in the file
 *	  enrollment_replay.horizon in the data directory and is raised (written
 *	  and fsync'd) *before* a request with a later timestamp is accepted,
 *	  in steps of ENR_REPLAY_HORIZON_STEP seconds, so the file is written at most
 *	  once per step under steady traffic.
 *	- the floor F: requests whose timestamp is below F are refused as
 *	  stale.  At shared memory initialisation (server start, and again after
 *	  a crash) F = max(now, H + 1): nothing signed before the start, and
 *	  nothing the lost cache may have accepted, can be replayed.  When a
 *	  standby is promoted, the first verification afterwards raises F to the
 *	  current time.
 *	- the replicated copy: replay_horizon.c keeps H per database in a row
 *	  that the WAL carries to standbys, so that a promoted standby also
 *	  refuses what the old primary accepted with a timestamp after the
 *	  promotion; the floor is raised above it before it is consulted.
 *
 * When the cache is full, expired entries of the partition are swept; if it
 * is still full the request is refused (fail closed), never accepted.
 *
 * The cache has 16 to 128 partitions, a power of two chosen from
 * max_nonces so that none holds more than about 32 k nonces: a sweep scans
 * every bucket of its partition under the partition's lock, and requests
 * hashing there wait for it (at max_nonces = 6 M, 16 partitions held each
 * lock about 4 ms per sweep; 128 hold each under 0.5 ms).  Small caches keep
 * 16, so that the first partition to fill is close to the whole capacity.
 *
 * Locking: the named tranche "enrollment" holds 3 + enr_nonce_partitions() locks.
 *	  lock 0 (state lock)	serializes writes of the horizon (file and
 *							atomic) and the promotion flags; the floor and
 *							the horizon are read lock-free (atomics), so a
 *							verification never waits for the file's fsync
 *	  lock 1 (last-used)	shared to update an existing stamp (atomically),
 *							exclusive to add or remove a key
 *	  counters				atomics, no lock
 *	  lock 2 + p			partition p of the nonce cache; a check-and-
 *							insert holds it exclusively for one lookup
 *	  lock 2 + partitions	(the last) as lock 1, for the nodes' last-seen
 *							stamps (0.7.0)
 * No lock is held while another is taken, except the state lock never
 * being taken while a partition lock is held.
 *
 * src/shmem.c
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include "access/xlog.h"
#include "miscadmin.h"
#include "port/atomics.h"
#include "storage/fd.h"
#include "storage/ipc.h"
#include "storage/lwlock.h"
#include "storage/shmem.h"
#include "utils/hsearch.h"
#include "utils/timestamp.h"

#include "enrollment.h"

#define NONCE_PARTITIONS_MIN	16
#define NONCE_PARTITIONS_MAX	128
#define NONCE_PARTITION_TARGET	32768	/* nonces per partition, at most, up to MAX */
#define HORIZON_FILE			"enrollment_replay.horizon"

typedef struct NonceKey
{
	uint64		key_id;
	uint8		nonce_hash[16];
} NonceKey;

typedef struct NonceEntry
{
	NonceKey	key;			/* hash key: must be first */
	int64		ts;				/* the request's timestamp (Unix seconds) */
} NonceEntry;

typedef struct LastUsedKey
{
	Oid			dbid;			/* keys live in one database: so do their stamps */
	uint64		key_id;			/* an API key's id, or a node credential's public id */
} LastUsedKey;

typedef struct LastUsedEntry
{
	LastUsedKey key;			/* hash key: must be first */
	pg_atomic_uint64 stamp;		/* TimestampTz of the latest accepted request */
} LastUsedEntry;

typedef struct EnrCounters
{
	pg_atomic_uint64 enroll[ENROLL_NUM_OUTCOMES];
	pg_atomic_uint64 verify[VERIFY_NUM_OUTCOMES];
	pg_atomic_uint64 worker[WORKER_NUM_COUNTERS];
	pg_atomic_uint64 last_run_end;		/* TimestampTz */
	pg_atomic_uint64 last_run_duration_us;
	pg_atomic_uint64 reset_at;			/* TimestampTz */
} EnrCounters;

typedef struct EnrShared
{
	LWLockPadded *locks;
	/* per EnrStampKind: its table had no room for a new entry (see enr_stamp_note) */
	pg_atomic_uint32 stamps_full[ENR_STAMP_KINDS];
	EnrCounters counters;		/* atomics only: no lock */
	pg_atomic_uint64 floor;		/* refuse requests with ts < floor (int64) */
	pg_atomic_uint64 horizon;	/* every accepted ts <= horizon (persisted) */
	uint64		instance;		/* random id of this server start */
	bool		started_as_standby;
	bool		promotion_handled;
	/*
	 * per nonce partition, under its lock: no held nonce has an older
	 * timestamp (PG_INT64_MAX when none is held), so a sweep can free
	 * nothing while this is still inside the window
	 */
	int64		oldest_ts[NONCE_PARTITIONS_MAX];
	/*
	 * per nonce partition, under its lock: a sweep forgot nonces older than
	 * this, so a request with an older timestamp could be a replay the
	 * cache no longer knows.  It is refused as stale, whatever the window
	 * says now: a window raised by a reload, or a sweep by a process whose
	 * clock read a second later, would otherwise let such a replay in.
	 */
	int64		forgotten_below[NONCE_PARTITIONS_MAX];
} EnrShared;

int			enrollment_max_nonces = 100000;
int			enrollment_last_used_slots = 10000;
int			enrollment_last_seen_slots = 10000;

static EnrShared *enr_shared = NULL;
static HTAB *nonce_tables[NONCE_PARTITIONS_MAX];
static HTAB *stamp_tables[ENR_STAMP_KINDS];	/* by EnrStampKind */

static shmem_request_hook_type prev_shmem_request_hook = NULL;
static shmem_startup_hook_type prev_shmem_startup_hook = NULL;

const char *const enroll_outcome_names[ENROLL_NUM_OUTCOMES] = {
	"ok", "invalid_token", "token_expired", "token_revoked", "token_exhausted",
	"cluster_mismatch", "node_mismatch", "node_limit_exceeded", "rate_limited",
	"ip_pool_exhausted", "written_directly"
};
const char *const verify_outcome_names[VERIFY_NUM_OUTCOMES] = {
	"ok", "missing_headers", "invalid_key", "invalid_timestamp", "invalid_nonce",
	"malformed_signature", "stale_timestamp", "bad_signature", "nonce_reused",
	"nonce_cache_full", "insufficient_scope"
};

static void
enr_counters_init(EnrCounters *c, TimestampTz now)
{
	for (int i = 0; i < ENROLL_NUM_OUTCOMES; i++)
		pg_atomic_init_u64(&c->enroll[i], 0);
	for (int i = 0; i < VERIFY_NUM_OUTCOMES; i++)
		pg_atomic_init_u64(&c->verify[i], 0);
	for (int i = 0; i < WORKER_NUM_COUNTERS; i++)
		pg_atomic_init_u64(&c->worker[i], 0);
	pg_atomic_init_u64(&c->last_run_end, 0);
	pg_atomic_init_u64(&c->last_run_duration_us, 0);
	pg_atomic_init_u64(&c->reset_at, (uint64) now);
}

/*
 * Zero the counters while other backends may be adding to them: a write,
 * not an init (which, where 64-bit atomics are emulated, would re-create
 * the lock under a backend holding it).
 */
static void
enr_counters_zero(EnrCounters *c, TimestampTz now)
{
	for (int i = 0; i < ENROLL_NUM_OUTCOMES; i++)
		pg_atomic_write_u64(&c->enroll[i], 0);
	for (int i = 0; i < VERIFY_NUM_OUTCOMES; i++)
		pg_atomic_write_u64(&c->verify[i], 0);
	for (int i = 0; i < WORKER_NUM_COUNTERS; i++)
		pg_atomic_write_u64(&c->worker[i], 0);
	pg_atomic_write_u64(&c->last_run_end, 0);
	pg_atomic_write_u64(&c->last_run_duration_us, 0);
	pg_atomic_write_u64(&c->reset_at, (uint64) now);
}

/*
 * How many partitions the nonce cache has: a function of max_nonces alone,
 * which is fixed at server start, so every process computes the same, once.
 */
int
enr_nonce_partitions(void)
{
	static int	n = 0;

	if (n == 0)
	{
		int			p = NONCE_PARTITIONS_MIN;

		while (p < NONCE_PARTITIONS_MAX && enrollment_max_nonces / p > NONCE_PARTITION_TARGET)
			p *= 2;
		n = p;
	}
	return n;
}

static long
partition_size(void)
{
	return (enrollment_max_nonces + enr_nonce_partitions() - 1) / enr_nonce_partitions();
}

static Size
enr_shmem_size(void)
{
	Size		size = MAXALIGN(sizeof(EnrShared));

	for (int p = 0; p < enr_nonce_partitions(); p++)
		size = add_size(size, hash_estimate_size(partition_size(), sizeof(NonceEntry)));
	size = add_size(size, hash_estimate_size(enrollment_last_used_slots, sizeof(LastUsedEntry)));
	size = add_size(size, hash_estimate_size(enrollment_last_seen_slots, sizeof(LastUsedEntry)));
	return size;
}

static void
enr_shmem_request(void)
{
	if (prev_shmem_request_hook)
		prev_shmem_request_hook();
	RequestAddinShmemSpace(enr_shmem_size());
	RequestNamedLWLockTranche("enrollment", 3 + enr_nonce_partitions());
}

/* Read the persisted horizon; 0 when there is none yet */
static int64
read_horizon_file(void)
{
	char		buf[32];
	int			fd;
	ssize_t		n;

	fd = open(HORIZON_FILE, O_RDONLY | PG_BINARY, 0);
	if (fd < 0)
	{
		if (errno != ENOENT)
			ereport(WARNING,
					(errcode_for_file_access(),
					 errmsg("could not open \"%s\": %m", HORIZON_FILE),
					 errdetail("Requests signed before now are refused.")));
		return 0;
	}
	n = read(fd, buf, sizeof(buf) - 1);
	close(fd);
	if (n <= 0)
		return 0;
	buf[n] = '\0';
	return strtoll(buf, NULL, 10);
}

/* Durably replace the horizon file (temp file, fsync, rename, fsync dir) */
static void
write_horizon_file(int64 horizon)
{
	char		buf[32];
	char		tmp[] = HORIZON_FILE ".tmp";
	int			fd;
	int			len = snprintf(buf, sizeof(buf), INT64_FORMAT "\n", horizon);

	fd = OpenTransientFile(tmp, O_WRONLY | O_CREAT | O_TRUNC | PG_BINARY);
	if (fd < 0)
		ereport(ERROR,
				(errcode_for_file_access(),
				 errmsg("could not create \"%s\": %m", tmp)));
	if (write(fd, buf, len) != len || pg_fsync(fd) != 0)
	{
		int			save_errno = errno;

		CloseTransientFile(fd);
		errno = save_errno ? save_errno : ENOSPC;
		ereport(ERROR,
				(errcode_for_file_access(),
				 errmsg("could not write \"%s\": %m", tmp)));
	}
	if (CloseTransientFile(fd) != 0)
		ereport(ERROR,
				(errcode_for_file_access(),
				 errmsg("could not close \"%s\": %m", tmp)));
	durable_rename(tmp, HORIZON_FILE, ERROR);
}

static void
enr_shmem_startup(void)
{
	bool		found;
	HASHCTL		info;

	if (prev_shmem_startup_hook)
		prev_shmem_startup_hook();

	/* reset in case this is a restart within the postmaster */
	enr_shared = NULL;
	for (int k = 0; k < ENR_STAMP_KINDS; k++)
		stamp_tables[k] = NULL;
	for (int p = 0; p < NONCE_PARTITIONS_MAX; p++)
		nonce_tables[p] = NULL;

	LWLockAcquire(AddinShmemInitLock, LW_EXCLUSIVE);

	enr_shared = ShmemInitStruct("enrollment", sizeof(EnrShared), &found);
	if (!found)
	{
		int64		now = (int64) time(NULL);
		int64		horizon = read_horizon_file();
		struct stat st;

		enr_shared->locks = GetNamedLWLockTranche("enrollment");
		pg_atomic_init_u64(&enr_shared->floor, (uint64) Max(now, horizon + 1));
		pg_atomic_init_u64(&enr_shared->horizon, (uint64) Max(horizon, 0));
		/* tells this start's replay_horizon rows from any other's */
		if (!pg_strong_random(&enr_shared->instance, sizeof(enr_shared->instance)))
			enr_shared->instance = ((uint64) now << 22) ^ (uint64) getpid();
		enr_shared->started_as_standby = (stat(STANDBY_SIGNAL_FILE, &st) == 0);
		enr_shared->promotion_handled = false;
		for (int p = 0; p < enr_nonce_partitions(); p++)
		{
			enr_shared->oldest_ts[p] = PG_INT64_MAX;
			enr_shared->forgotten_below[p] = PG_INT64_MIN;
		}
		enr_counters_init(&enr_shared->counters, GetCurrentTimestamp());
		for (int k = 0; k < ENR_STAMP_KINDS; k++)
			pg_atomic_init_u32(&enr_shared->stamps_full[k], 0);
	}

	memset(&info, 0, sizeof(info));
	info.keysize = sizeof(NonceKey);
	info.entrysize = sizeof(NonceEntry);
	for (int p = 0; p < enr_nonce_partitions(); p++)
	{
		char		name[64];

		snprintf(name, sizeof(name), "enrollment nonces %d", p);
		nonce_tables[p] = ShmemInitHash(name, partition_size(), partition_size(),
										&info, HASH_ELEM | HASH_BLOBS | HASH_FIXED_SIZE);
	}
	info.keysize = sizeof(LastUsedKey);
	info.entrysize = sizeof(LastUsedEntry);
	stamp_tables[ENR_STAMP_API_KEY] =
		ShmemInitHash("enrollment last used", enrollment_last_used_slots,
					  enrollment_last_used_slots, &info,
					  HASH_ELEM | HASH_BLOBS | HASH_FIXED_SIZE);
	stamp_tables[ENR_STAMP_NODE] =
		ShmemInitHash("enrollment last seen", enrollment_last_seen_slots,
					  enrollment_last_seen_slots, &info,
					  HASH_ELEM | HASH_BLOBS | HASH_FIXED_SIZE);

	LWLockRelease(AddinShmemInitLock);
}

/* Install the hooks; called from _PG_init only while preloading */
void
enrollment_shmem_init(void)
{
	prev_shmem_request_hook = shmem_request_hook;
	shmem_request_hook = enr_shmem_request;
	prev_shmem_startup_hook = shmem_startup_hook;
	shmem_startup_hook = enr_shmem_startup;
}

/* True when the shared state exists (library preloaded) */
bool
enr_shmem_available(void)
{
	return enr_shared != NULL;
}

/* Raise the "needs shared_preload_libraries" error */
void
enr_require_shmem(void)
{
	if (enr_shared == NULL)
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("enrollment must be loaded via shared_preload_libraries"),
				 errdetail("Replay protection keeps accepted nonces in shared memory."),
				 errhint("Add enrollment to shared_preload_libraries in postgresql.conf and restart the server.")));
}

/*
 * The lowest timestamp that may still be accepted.  After a promotion the
 * first call raises it to now: the old primary's cache is not here.
 */
int64
enr_replay_floor(void)
{
	int64		floor;

	/* the horizon another server start left in this database's row */
	enr_replay_horizon_absorb();

	if (enr_shared->started_as_standby && !enr_shared->promotion_handled &&
		!RecoveryInProgress())
	{
		LWLockAcquire(&enr_shared->locks[0].lock, LW_EXCLUSIVE);
		if (!enr_shared->promotion_handled)
		{
			enr_replay_floor_raise((int64) time(NULL));
			enr_shared->promotion_handled = true;
		}
		LWLockRelease(&enr_shared->locks[0].lock);
	}
	/* a raise seen through promotion_handled is seen in the floor too */
	pg_read_barrier();
	floor = (int64) pg_atomic_read_u64(&enr_shared->floor);
	return floor;
}

/*
 * Refuse, from now on, every request dated before f.  The floor only rises:
 * a compare-and-swap loop, so that no raise is lost to a concurrent one.
 * Timestamps here are never negative, so their unsigned order is theirs.
 */
void
enr_replay_floor_raise(int64 f)
{
	uint64		old = pg_atomic_read_u64(&enr_shared->floor);

	if (f < 0)
		return;
	while ((int64) old < f &&
		   !pg_atomic_compare_exchange_u64(&enr_shared->floor, &old, (uint64) f))
		;
}

/* The random id of this server start (replay_horizon.c) */
uint64
enr_server_instance(void)
{
	return enr_shared->instance;
}

/*
 * Make sure ts is covered by the persisted horizon before a request with
 * that timestamp is accepted.  Usually a single atomic read.
 */
static void
reserve_horizon(int64 ts, int64 now)
{
	if ((int64) pg_atomic_read_u64(&enr_shared->horizon) >= ts)
		return;
	LWLockAcquire(&enr_shared->locks[0].lock, LW_EXCLUSIVE);
	if ((int64) pg_atomic_read_u64(&enr_shared->horizon) < ts)
	{
		int64		h = Max(ts, now) + ENR_REPLAY_HORIZON_STEP;

		/* on error the lock is released by transaction abort */
		write_horizon_file(h);
		pg_atomic_write_u64(&enr_shared->horizon, (uint64) h);
	}
	LWLockRelease(&enr_shared->locks[0].lock);
}

/*
 * Remove entries of partition p whose timestamp is older than oldest_valid,
 * and note the oldest timestamp left.  Until that one leaves the window a
 * sweep cannot free anything, so a full partition refuses new nonces at once
 * instead of scanning itself on every request, and the worker passes it by.
 * Caller holds the partition lock exclusively.
 */
static int
sweep_partition(int p, int64 oldest_valid)
{
	HTAB	   *table = nonce_tables[p];
	HASH_SEQ_STATUS status;
	NonceEntry *e;
	int			removed = 0;
	int64		oldest_kept = PG_INT64_MAX;

	hash_seq_init(&status, table);
	while ((e = hash_seq_search(&status)) != NULL)
	{
		if (e->ts < oldest_valid)
		{
			hash_search(table, &e->key, HASH_REMOVE, NULL);
			removed++;
		}
		else if (e->ts < oldest_kept)
			oldest_kept = e->ts;
	}
	enr_shared->oldest_ts[p] = oldest_kept;
	if (removed > 0 && oldest_valid > enr_shared->forgotten_below[p])
		enr_shared->forgotten_below[p] = oldest_valid;
	return removed;
}

/*
 * Accept (key_id, nonce) with timestamp ts, or say why not.  The caller has
 * already checked the window and the signature.  NONCE_STALE: a sweep of
 * the nonce's partition forgot nonces as old (see forgotten_below), or the
 * database's replicated horizon shows another server start that may have
 * accepted it (replay_horizon.c).
 */
NonceVerdict
enr_nonce_check_and_remember(uint64 key_id, const char *nonce, size_t nonce_len,
							 int64 ts, int64 now, int window)
{
	NonceKey	key;
	uint8		digest[ENR_DIGEST_LEN];
	int			p;
	LWLock	   *lock;
	NonceEntry *e;
	bool		found;

	memset(&key, 0, sizeof(key));
	key.key_id = key_id;
	enr_sha256(nonce, nonce_len, digest);
	memcpy(key.nonce_hash, digest, sizeof(key.nonce_hash));
	p = digest[31] & (enr_nonce_partitions() - 1);	/* a power of two: uniform */
	lock = &enr_shared->locks[2 + p].lock;

	reserve_horizon(ts, now);
	/* and by this database's replicated copy (a no-op on a standby) */
	if (!enr_replay_horizon_cover(ts, now))
		return NONCE_STALE;

	LWLockAcquire(lock, LW_EXCLUSIVE);
	if (ts < enr_shared->forgotten_below[p])
	{
		LWLockRelease(lock);
		return NONCE_STALE;
	}
	e = hash_search(nonce_tables[p], &key, HASH_ENTER_NULL, &found);
	if (e == NULL && enr_shared->oldest_ts[p] < now - window)
	{
		sweep_partition(p, now - window);
		e = hash_search(nonce_tables[p], &key, HASH_ENTER_NULL, &found);
	}
	if (e == NULL)
	{
		LWLockRelease(lock);
		return NONCE_CACHE_FULL;
	}
	if (found && e->ts >= now - window)
	{
		LWLockRelease(lock);
		return NONCE_REUSED;
	}
	e->ts = ts;
	/* a nonce may come with an older timestamp than any held */
	if (ts < enr_shared->oldest_ts[p])
		enr_shared->oldest_ts[p] = ts;
	LWLockRelease(lock);
	return NONCE_ACCEPTED;
}

/* Number of nonces held right now (for monitoring) */
int64
enr_nonces_held(void)
{
	int64		n = 0;

	if (enr_shared == NULL)
		return 0;
	for (int p = 0; p < enr_nonce_partitions(); p++)
	{
		LWLockAcquire(&enr_shared->locks[2 + p].lock, LW_SHARED);
		n += hash_get_num_entries(nonce_tables[p]);
		LWLockRelease(&enr_shared->locks[2 + p].lock);
	}
	return n;
}

/*
 * The hash key of key_id in the current database.  Filled in place: the
 * key is hashed as bytes, padding included, and a struct returned by value
 * need not keep its padding zeroed (it travels in registers), which made
 * one backend miss another's stamps.
 */
static void
last_used_key(uint64 key_id, LastUsedKey *k)
{
	memset(k, 0, sizeof(*k));
	k->dbid = MyDatabaseId;
	k->key_id = key_id;
}

/* The lock of a stamp table: lock 1 for the API keys', the last one for the nodes' */
static LWLock *
stamp_lock(EnrStampKind kind)
{
	return kind == ENR_STAMP_API_KEY ? &enr_shared->locks[1].lock
		: &enr_shared->locks[2 + enr_nonce_partitions()].lock;
}

/*
 * Remember that key_id (an API key, or a node credential's public id, of
 * the current database) was used at stamp.  Updating a known one takes the
 * lock in shared mode only, so concurrent verifications of one key never
 * wait for each other; a full table drops the stamp (it is advisory), and
 * until the worker has written and removed some, new ones are dropped
 * without taking the lock exclusively (a standby's table, which no worker
 * empties, stays full).
 */
void
enr_stamp_note(EnrStampKind kind, uint64 key_id, TimestampTz stamp)
{
	LWLock	   *lock;
	HTAB	   *table = stamp_tables[kind];
	LastUsedKey k;
	LastUsedEntry *e;
	bool		found;

	if (enr_shared == NULL)
		return;					/* not preloaded: nothing to note in */
	lock = stamp_lock(kind);
	last_used_key(key_id, &k);
	LWLockAcquire(lock, LW_SHARED);
	e = hash_search(table, &k, HASH_FIND, NULL);
	if (e != NULL)
	{
		uint64		old = pg_atomic_read_u64(&e->stamp);

		while ((int64) old < stamp &&
			   !pg_atomic_compare_exchange_u64(&e->stamp, &old, (uint64) stamp))
			;
		LWLockRelease(lock);
		return;
	}
	LWLockRelease(lock);
	if (pg_atomic_read_u32(&enr_shared->stamps_full[kind]) != 0)
		return;

	LWLockAcquire(lock, LW_EXCLUSIVE);
	e = hash_search(table, &k, HASH_ENTER_NULL, &found);
	if (e != NULL)
	{
		if (!found)
			pg_atomic_init_u64(&e->stamp, (uint64) stamp);
		else if ((int64) pg_atomic_read_u64(&e->stamp) < stamp)
			pg_atomic_write_u64(&e->stamp, (uint64) stamp);
	}
	else
		pg_atomic_write_u32(&enr_shared->stamps_full[kind], 1);
	LWLockRelease(lock);
}

/* The latest stamp noted for key_id of the current database, or 0 */
TimestampTz
enr_stamp_get(EnrStampKind kind, uint64 key_id)
{
	LastUsedKey k;
	LastUsedEntry *e;
	TimestampTz stamp = 0;

	if (enr_shared == NULL)
		return 0;
	last_used_key(key_id, &k);
	LWLockAcquire(stamp_lock(kind), LW_SHARED);
	e = hash_search(stamp_tables[kind], &k, HASH_FIND, NULL);
	if (e != NULL)
		stamp = (TimestampTz) pg_atomic_read_u64(&e->stamp);
	LWLockRelease(stamp_lock(kind));
	return stamp;
}

/* Counters: lock-free increments; no-ops when the library is not preloaded */
void
enr_count_enroll(EnrollOutcome o)
{
	if (enr_shared != NULL)
		pg_atomic_fetch_add_u64(&enr_shared->counters.enroll[o], 1);
}

void
enr_count_verify(VerifyOutcome o)
{
	if (enr_shared != NULL)
		pg_atomic_fetch_add_u64(&enr_shared->counters.verify[o], 1);
}

void
enr_count_worker(WorkerCounter c, uint64 n)
{
	if (enr_shared != NULL && n > 0)
		pg_atomic_fetch_add_u64(&enr_shared->counters.worker[c], n);
}

void
enr_note_worker_run(TimestampTz end, int64 duration_us)
{
	if (enr_shared == NULL)
		return;
	pg_atomic_fetch_add_u64(&enr_shared->counters.worker[WORKER_RUNS], 1);
	pg_atomic_write_u64(&enr_shared->counters.last_run_end, (uint64) end);
	pg_atomic_write_u64(&enr_shared->counters.last_run_duration_us, (uint64) duration_us);
}

/* Copy the counters out (for enrollment.stats) */
void
enr_counters_read(uint64 *enroll, uint64 *verify, uint64 *worker,
				  TimestampTz *last_run_end, int64 *last_run_us, TimestampTz *reset_at)
{
	EnrCounters *c = &enr_shared->counters;

	for (int i = 0; i < ENROLL_NUM_OUTCOMES; i++)
		enroll[i] = pg_atomic_read_u64(&c->enroll[i]);
	for (int i = 0; i < VERIFY_NUM_OUTCOMES; i++)
		verify[i] = pg_atomic_read_u64(&c->verify[i]);
	for (int i = 0; i < WORKER_NUM_COUNTERS; i++)
		worker[i] = pg_atomic_read_u64(&c->worker[i]);
	*last_run_end = (TimestampTz) pg_atomic_read_u64(&c->last_run_end);
	*last_run_us = (int64) pg_atomic_read_u64(&c->last_run_duration_us);
	*reset_at = (TimestampTz) pg_atomic_read_u64(&c->reset_at);
}

/* Zero the counters (enrollment.stats_reset) */
void
enr_counters_reset(void)
{
	enr_counters_zero(&enr_shared->counters, GetCurrentTimestamp());
}

/* Forget every nonce whose timestamp is older than oldest_valid; returns how many */
int64
enr_nonce_sweep(int64 oldest_valid)
{
	int64		removed = 0;

	if (enr_shared == NULL)
		return 0;
	for (int p = 0; p < enr_nonce_partitions(); p++)
	{
		LWLockAcquire(&enr_shared->locks[2 + p].lock, LW_EXCLUSIVE);
		if (enr_shared->oldest_ts[p] < oldest_valid)
			removed += sweep_partition(p, oldest_valid);
		LWLockRelease(&enr_shared->locks[2 + p].lock);
	}
	return removed;
}

/* qsort and bsearch order of uint64 ids */
int
enr_compare_uint64(const void *a, const void *b)
{
	uint64		x = *(const uint64 *) a;
	uint64		y = *(const uint64 *) b;

	return x < y ? -1 : x > y;
}

/*
 * Copy up to max stamps of a kind of the current database out of shared
 * memory, passing over the nexclude ids of exclude (sorted ascending)
 */
int
enr_stamp_collect(EnrStampKind kind, uint64 *key_ids, TimestampTz *stamps, int max,
				  const uint64 *exclude, int nexclude)
{
	HASH_SEQ_STATUS status;
	LastUsedEntry *e;
	int			n = 0;

	if (enr_shared == NULL)
		return 0;
	LWLockAcquire(stamp_lock(kind), LW_SHARED);
	hash_seq_init(&status, stamp_tables[kind]);
	while ((e = hash_seq_search(&status)) != NULL)
	{
		if (e->key.dbid != MyDatabaseId)
			continue;
		if (nexclude > 0 &&
			bsearch(&e->key.key_id, exclude, nexclude, sizeof(uint64), enr_compare_uint64) != NULL)
			continue;
		if (n >= max)
		{
			hash_seq_term(&status);
			break;
		}
		key_ids[n] = e->key.key_id;
		stamps[n] = (TimestampTz) pg_atomic_read_u64(&e->stamp);
		n++;
	}
	LWLockRelease(stamp_lock(kind));
	return n;
}

/* Drop stamps that were written to their rows and have not moved since */
void
enr_stamp_forget(EnrStampKind kind, const uint64 *key_ids, const TimestampTz *stamps, int n)
{
	HTAB	   *table = stamp_tables[kind];
	bool		removed = false;

	LWLockAcquire(stamp_lock(kind), LW_EXCLUSIVE);
	for (int i = 0; i < n; i++)
	{
		LastUsedKey k;
		LastUsedEntry *e;

		last_used_key(key_ids[i], &k);
		e = hash_search(table, &k, HASH_FIND, NULL);

		if (e != NULL && (TimestampTz) pg_atomic_read_u64(&e->stamp) == stamps[i])
		{
			hash_search(table, &k, HASH_REMOVE, NULL);
			removed = true;
		}
	}
	/* room again: new keys may take the lock to enter */
	if (removed)
		pg_atomic_write_u32(&enr_shared->stamps_full[kind], 0);
	LWLockRelease(stamp_lock(kind));
}
