/*-------------------------------------------------------------------------
 *
 * server_key.c
 *	  The server key that seals stored HMAC secrets (AES-256-GCM).  It lives
 *	  in a file outside the database, never in a table, so neither pg_dump
 *	  nor a stolen table can reveal a secret.
 *
 * Location: enrollment.server_key_file, or enrollment_server.key in the
 * data directory.  Format: one line per key version, "<version> <64 hex>";
 * the highest version seals new secrets, every listed version can open the
 * secrets it sealed.  The file must not be readable by group or others.
 *
 * The file is created (mode 0600) the first time a secret is sealed on a
 * primary; a standby never creates it (copy the primary's file, as
 * pg_basebackup does for the default location).  Rotation writes a new
 * file with one more version (temporary file, fsync, rename) and is
 * serialised by an advisory transaction lock taken by the caller.
 *
 * Each backend caches the parsed file and re-reads it when it changed (on
 * the cold paths) or when a secret names a version it does not know.
 *
 * src/server_key.c
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include "access/xlog.h"
#include "miscadmin.h"
#include "storage/fd.h"
#include "utils/memutils.h"

#include "enrollment.h"

#define SERVER_KEY_DEFAULT_FILE	"enrollment_server.key"
#define SERVER_KEY_MAX_VERSIONS	1000

static ServerKey *cached_keys = NULL;	/* in TopMemoryContext */
static int	cached_nkeys = 0;
static struct stat cached_st;

static const char *
key_file_path(void)
{
	if (enrollment_server_key_file != NULL && enrollment_server_key_file[0] != '\0')
		return enrollment_server_key_file;
	return SERVER_KEY_DEFAULT_FILE; /* relative to the data directory */
}

static void
forget_cache(void)
{
	if (cached_keys != NULL)
	{
		enr_secure_zero(cached_keys, sizeof(ServerKey) * SERVER_KEY_MAX_VERSIONS);
		pfree(cached_keys);
	}
	cached_keys = NULL;
	cached_nkeys = 0;
}

/* Write a key file with the given versions to path (durably, mode 0600) */
static void
write_key_file(const char *path, const ServerKey *keys, int nkeys, bool exclusive)
{
	char	   *tmp = psprintf("%s.tmp", path);
	const char *target = exclusive ? path : tmp;
	StringInfoData buf;
	int			fd;

	initStringInfo(&buf);
	for (int i = 0; i < nkeys; i++)
	{
		char		hex[2 * ENR_AEAD_KEY_LEN + 1];

		enr_hex_encode_lower(keys[i].key, ENR_AEAD_KEY_LEN, hex);
		hex[2 * ENR_AEAD_KEY_LEN] = '\0';
		appendStringInfo(&buf, "%d %s\n", keys[i].version, hex);
		enr_secure_zero(hex, sizeof(hex));
	}

	fd = OpenTransientFilePerm(target,
							   O_WRONLY | O_CREAT | PG_BINARY | (exclusive ? O_EXCL : O_TRUNC),
							   S_IRUSR | S_IWUSR);
	if (fd < 0)
	{
		enr_secure_zero(buf.data, buf.len);
		if (exclusive && errno == EEXIST)
			return;				/* another backend created it first: use theirs */
		ereport(ERROR,
				(errcode_for_file_access(),
				 errmsg("could not create server key file \"%s\": %m", target)));
	}
	if (write(fd, buf.data, buf.len) != buf.len || pg_fsync(fd) != 0)
	{
		int			save_errno = errno;

		enr_secure_zero(buf.data, buf.len);
		CloseTransientFile(fd);
		errno = save_errno ? save_errno : ENOSPC;
		ereport(ERROR,
				(errcode_for_file_access(),
				 errmsg("could not write server key file \"%s\": %m", target)));
	}
	enr_secure_zero(buf.data, buf.len);
	if (CloseTransientFile(fd) != 0)
		ereport(ERROR,
				(errcode_for_file_access(),
				 errmsg("could not close server key file \"%s\": %m", target)));
	if (exclusive)
		fsync_fname(".", true);
	else
		durable_rename(tmp, path, ERROR);
}

#define SERVER_KEY_VERSION_MAX	999999999	/* 9 digits: version + 1 cannot overflow */

/*
 * One line of the key file: a version (1 to 999999999, decimal), blanks,
 * 64 hex digits, optional trailing blanks, then the end of the line.  The
 * key goes to key; false for anything else.  line is NUL-terminated and
 * holds its newline unless it is the file's last line.
 */
static bool
parse_key_line(const char *line, int *version, uint8 key[ENR_AEAD_KEY_LEN])
{
	const char *p = line;
	int64		v = 0;
	int			digits = 0;

	while (*p >= '0' && *p <= '9')
	{
		if (++digits > 9)
			return false;
		v = v * 10 + (*p++ - '0');
	}
	if (digits == 0 || v < 1 || v > SERVER_KEY_VERSION_MAX || (*p != ' ' && *p != '\t'))
		return false;
	while (*p == ' ' || *p == '\t')
		p++;
	for (int i = 0; i < 2 * ENR_AEAD_KEY_LEN; i++)
		if (p[i] == '\0')
			return false;
	if (!enr_hex_decode(p, 2 * ENR_AEAD_KEY_LEN, key))
		return false;
	p += 2 * ENR_AEAD_KEY_LEN;
	while (*p == ' ' || *p == '\t' || *p == '\r')
		p++;
	if (*p == '\n')
		p++;
	if (*p != '\0')
		return false;
	*version = (int) v;
	return true;
}

/* Parse the key file into the cache; false if it does not exist */
static bool
load_key_file(void)
{
	const char *path = key_file_path();
	struct stat st;
	FILE	   *f;
	char		line[256];
	ServerKey  *keys;
	int			nkeys = 0;
	int			lineno = 0;

	if (stat(path, &st) != 0)
	{
		if (errno == ENOENT)
		{
			forget_cache();
			return false;
		}
		ereport(ERROR,
				(errcode_for_file_access(),
				 errmsg("could not stat server key file \"%s\": %m", path)));
	}
	if (cached_keys != NULL && st.st_mtime == cached_st.st_mtime &&
		st.st_size == cached_st.st_size && st.st_ino == cached_st.st_ino)
		return true;			/* unchanged */

	if ((st.st_mode & (S_IRWXG | S_IRWXO)) != 0)
		ereport(ERROR,
				(errcode(ERRCODE_CONFIG_FILE_ERROR),
				 errmsg("server key file \"%s\" has group or world access", path),
				 errdetail("The server key protects every stored HMAC secret."),
				 errhint("Run chmod 0600 on the file.")));

	f = AllocateFile(path, "r");
	if (f == NULL)
		ereport(ERROR,
				(errcode_for_file_access(),
				 errmsg("could not open server key file \"%s\": %m", path)));
	keys = MemoryContextAllocZero(TopMemoryContext, sizeof(ServerKey) * SERVER_KEY_MAX_VERSIONS);
	while (fgets(line, sizeof(line), f) != NULL)
	{
		int			version = 0;
		bool		ok;
		bool		duplicate = false;
		size_t		len = strlen(line);

		lineno++;
		if (line[0] == '#' || line[0] == '\n')
		{
			/* a comment longer than the buffer goes on in the next read */
			while (len == sizeof(line) - 1 && line[len - 1] != '\n' &&
				   fgets(line, sizeof(line), f) != NULL)
				len = strlen(line);
			continue;
		}
		/* a line the buffer could not hold whole is malformed too */
		ok = nkeys < SERVER_KEY_MAX_VERSIONS &&
			!(len == sizeof(line) - 1 && line[len - 1] != '\n') &&
			parse_key_line(line, &version, keys[nkeys].key);
		for (int i = 0; ok && i < nkeys; i++)
			duplicate |= (keys[i].version == version);
		if (!ok || duplicate)
		{
			enr_secure_zero(line, sizeof(line));
			enr_secure_zero(keys, sizeof(ServerKey) * SERVER_KEY_MAX_VERSIONS);
			pfree(keys);
			FreeFile(f);
			if (duplicate)
				ereport(ERROR,
						(errcode(ERRCODE_CONFIG_FILE_ERROR),
						 errmsg("server key file \"%s\" gives version %d twice (line %d)",
								path, version, lineno),
						 errdetail("Each version of the server key appears once.")));
			ereport(ERROR,
					(errcode(ERRCODE_CONFIG_FILE_ERROR),
					 errmsg("server key file \"%s\" is malformed at line %d", path, lineno),
					 errdetail("Each line is a version number from 1 to %d, blanks and 64 hex digits; lines starting with # are comments.",
							   SERVER_KEY_VERSION_MAX)));
		}
		keys[nkeys].version = version;
		nkeys++;
	}
	enr_secure_zero(line, sizeof(line));
	FreeFile(f);
	if (nkeys == 0)
	{
		pfree(keys);
		ereport(ERROR,
				(errcode(ERRCODE_CONFIG_FILE_ERROR),
				 errmsg("server key file \"%s\" holds no key", path)));
	}
	forget_cache();
	cached_keys = keys;
	cached_nkeys = nkeys;
	cached_st = st;
	return true;
}

/* The key that seals new secrets; creates the key file on first use */
const ServerKey *
enr_server_key_current(void)
{
	const ServerKey *best = NULL;

	if (!load_key_file())
	{
		ServerKey	first;

		if (RecoveryInProgress())
			ereport(ERROR,
					(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
					 errmsg("server key file \"%s\" is missing", key_file_path()),
					 errdetail("A standby never creates a server key."),
					 errhint("Copy the primary's server key file to this server.")));
		first.version = 1;
		enr_random_bytes(first.key, ENR_AEAD_KEY_LEN);
		write_key_file(key_file_path(), &first, 1, true);
		enr_secure_zero(&first, sizeof(first));
		if (!load_key_file())
			elog(ERROR, "server key file vanished after creation");
	}
	for (int i = 0; i < cached_nkeys; i++)
		if (best == NULL || cached_keys[i].version > best->version)
			best = &cached_keys[i];
	return best;
}

/* The key of a given version; re-reads the file once if it is not cached */
const ServerKey *
enr_server_key_version(int version)
{
	for (int pass = 0; pass < 2; pass++)
	{
		for (int i = 0; i < cached_nkeys; i++)
			if (cached_keys[i].version == version)
				return &cached_keys[i];
		if (pass == 0)
			load_key_file();
	}
	ereport(ERROR,
			(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
			 errmsg("server key version %d is not available", version),
			 errdetail("A stored secret was sealed with a key version that \"%s\" does not hold.",
					   key_file_path()),
			 errhint("Restore the server key file that sealed it (on a standby: copy the primary's).")));
	return NULL;				/* keep compiler quiet */
}

/*
 * Add a new key version and make it current; returns the new version.  The
 * caller holds the rotation lock and re-seals the secrets afterwards.
 */
int
enr_server_key_rotate(void)
{
	const ServerKey *cur = enr_server_key_current();
	ServerKey  *keys;
	int			n = cached_nkeys;
	int			version = cur->version + 1;

	if (n >= SERVER_KEY_MAX_VERSIONS || version > SERVER_KEY_VERSION_MAX)
		ereport(ERROR,
				(errcode(ERRCODE_PROGRAM_LIMIT_EXCEEDED),
				 errmsg("server key file holds too many versions"),
				 errhint("Remove versions that no API key uses any more (column key_version of enrollment.api_key).")));
	keys = palloc(sizeof(ServerKey) * (n + 1));
	memcpy(keys, cached_keys, sizeof(ServerKey) * n);
	keys[n].version = version;
	enr_random_bytes(keys[n].key, ENR_AEAD_KEY_LEN);
	write_key_file(key_file_path(), keys, n + 1, false);
	enr_secure_zero(keys, sizeof(ServerKey) * (n + 1));
	pfree(keys);
	if (!load_key_file())
		elog(ERROR, "server key file vanished after rotation");
	return version;
}
