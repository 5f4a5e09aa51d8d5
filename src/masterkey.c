/*
 * masterkey.c — the master keys of m365sync.key_file inside a backend.
 *
 * Reads the file with the checks PostgreSQL applies to ssl_key_file (owner,
 * no group/other access), refuses a file inside the data directory, parses
 * it with keyfile.c, and keeps the keys in static memory. The file is
 * checked once per transaction (a stat; re-read only when the path or the
 * file changed, e.g. after SIGHUP). Any problem wipes every key held so far,
 * together with the data keys unwrapped under them, and is an ERROR naming
 * the problem — never a key, never a fallback to plaintext.
 */
#include "postgres.h"

#include <sys/stat.h>
#include <fcntl.h>
#include <stdlib.h>
#include <unistd.h>

#include "miscadmin.h"
#include "storage/fd.h"

#include "crypto.h"
#include "keyfile.h"
#include "keyring.h"
#include "settings.h"
#include "masterkey.h"

typedef struct KeyFileSig
{
	char		path[MAXPGPATH];
	dev_t		dev;
	ino_t		ino;
	off_t		size;
	mode_t		mode;
	uid_t		uid;
	struct timespec mtime;
	struct timespec ctime;
} KeyFileSig;

static M365KeySet master_keys;
static bool master_loaded = false;
static KeyFileSig master_sig;
static bool recheck_key_file = true;

/* Counts the wipes; keyring.c drops its data keys when it sees it move. */
static uint64 master_generation = 0;

void
m365_master_keys_forget(void)
{
	m365_keyset_wipe(&master_keys);
	memset(&master_sig, 0, sizeof(master_sig));
	master_loaded = false;
	master_generation++;
}

uint64
m365_master_keys_generation(void)
{
	return master_generation;
}

void
m365_master_keys_recheck(void)
{
	recheck_key_file = true;
}

static void
fill_sig(KeyFileSig *sig, const char *path, const struct stat *st)
{
	memset(sig, 0, sizeof(*sig));
	strlcpy(sig->path, path, sizeof(sig->path));
	sig->dev = st->st_dev;
	sig->ino = st->st_ino;
	sig->size = st->st_size;
	sig->mode = st->st_mode;
	sig->uid = st->st_uid;
	sig->mtime = st->st_mtim;
	sig->ctime = st->st_ctim;
}

static bool
same_sig(const KeyFileSig *a, const KeyFileSig *b)
{
	return strcmp(a->path, b->path) == 0 && a->dev == b->dev && a->ino == b->ino &&
		a->size == b->size && a->mode == b->mode && a->uid == b->uid &&
		a->mtime.tv_sec == b->mtime.tv_sec && a->mtime.tv_nsec == b->mtime.tv_nsec &&
		a->ctime.tv_sec == b->ctime.tv_sec && a->ctime.tv_nsec == b->ctime.tv_nsec;
}

/* The rule PostgreSQL applies to ssl_key_file (be-secure-common.c). */
static void
check_key_file_access(const char *path, const struct stat *st)
{
	if (!S_ISREG(st->st_mode))
		ereport(ERROR,
				(errcode(ERRCODE_CONFIG_FILE_ERROR),
				 errmsg("master key file \"%s\" is not a regular file", path)));
	if (st->st_uid != geteuid() && st->st_uid != 0)
		ereport(ERROR,
				(errcode(ERRCODE_CONFIG_FILE_ERROR),
				 errmsg("master key file \"%s\" must be owned by the database user or root", path),
				 errhint("Run chown on the file so that the server's OS user or root owns it.")));
	if ((st->st_uid == geteuid() && (st->st_mode & (S_IRWXG | S_IRWXO))) ||
		(st->st_uid == 0 && (st->st_mode & (S_IWGRP | S_IXGRP | S_IRWXO))))
		ereport(ERROR,
				(errcode(ERRCODE_CONFIG_FILE_ERROR),
				 errmsg("master key file \"%s\" has group or world access", path),
				 errdetail("File must have permissions u=rw (0600) or less if owned by the database user, "
						   "or permissions u=rw,g=r (0640) or less if owned by root."),
				 errhint("Run chmod 600 \"%s\" and reload.", path)));
}

/* A key stored with the data it protects protects nothing in a backup. */
static void
check_outside_data_directory(const char *path)
{
	char	   *real_key = realpath(path, NULL);
	char	   *real_data = DataDir ? realpath(DataDir, NULL) : NULL;
	bool		inside = false;

	if (real_key != NULL && real_data != NULL)
	{
		size_t		n = strlen(real_data);

		inside = strncmp(real_key, real_data, n) == 0 &&
			(real_key[n] == '/' || real_key[n] == '\0');
	}
	free(real_key);
	free(real_data);
	if (inside)
		ereport(ERROR,
				(errcode(ERRCODE_CONFIG_FILE_ERROR),
				 errmsg("master key file \"%s\" lies inside the data directory", path),
				 errdetail("Backups copy the data directory; the master key must not travel with the data it protects."),
				 errhint("Move the file outside the data directory and point m365sync.key_file at it.")));
}

static void
load_key_file(const char *path)
{
	int			fd;
	struct stat st;
	char	   *text;
	ssize_t		got;
	M365KeySet *parsed;
	char		err[256];

	fd = OpenTransientFile(path, O_RDONLY | PG_BINARY);
	if (fd < 0)
		ereport(ERROR,
				(errcode_for_file_access(),
				 errmsg("could not open master key file \"%s\": %m", path),
				 errhint("m365sync.key_file must name a file of lines <key id>:<64 hex digits>, mode 0600.")));
	if (fstat(fd, &st) != 0)
		ereport(ERROR,
				(errcode_for_file_access(),
				 errmsg("could not stat master key file \"%s\": %m", path)));
	check_key_file_access(path, &st);
	check_outside_data_directory(path);
	if (st.st_size > M365_KEYFILE_MAX_BYTES)
		ereport(ERROR,
				(errcode(ERRCODE_CONFIG_FILE_ERROR),
				 errmsg("invalid master key file \"%s\": larger than %d bytes",
						path, M365_KEYFILE_MAX_BYTES)));

	text = palloc(st.st_size + 1);
	got = read(fd, text, st.st_size + 1);
	CloseTransientFile(fd);
	if (got < 0)
		ereport(ERROR,
				(errcode_for_file_access(),
				 errmsg("could not read master key file \"%s\": %m", path)));

	parsed = palloc(sizeof(M365KeySet));
	if (m365_keyfile_parse(text, got, parsed, err, sizeof(err)) != 0)
	{
		m365_secure_zero(text, got);
		pfree(text);
		pfree(parsed);
		ereport(ERROR,
				(errcode(ERRCODE_CONFIG_FILE_ERROR),
				 errmsg("invalid master key file \"%s\": %s", path, err),
				 errhint("Each line is <key id>:<64 hex digits> (32 random bytes, e.g. from openssl rand -hex 32); "
						 "the first line is the current key.")));
	}
	m365_secure_zero(text, got);
	pfree(text);

	m365_master_keys_forget();
	memcpy(&master_keys, parsed, sizeof(master_keys));
	m365_keyset_wipe(parsed);
	pfree(parsed);
	fill_sig(&master_sig, path, &st);
	master_loaded = true;
}

/*
 * Make sure the master keys of m365sync.key_file are loaded and current.
 * Any problem forgets every key held so far: a backend never keeps working
 * on keys its configuration no longer vouches for.
 */
const M365KeySet *
m365_master_keys(void)
{
	const char *path = m365_key_file;
	struct stat st;
	KeyFileSig	sig;

	if (master_loaded && !recheck_key_file)
		return &master_keys;

	if (path == NULL || path[0] == '\0')
	{
		m365_master_keys_forget();
		ereport(ERROR,
				(errcode(ERRCODE_CONFIG_FILE_ERROR),
				 errmsg("m365sync.key_file is not set"),
				 errdetail("m365sync stores nothing unencrypted and needs its master key to read or write."),
				 errhint("Set m365sync.key_file in postgresql.conf to a file outside the data directory, "
						 "mode 0600, of lines <key id>:<64 hex digits>, then reload.")));
	}
	if (!is_absolute_path(path))
	{
		m365_master_keys_forget();
		ereport(ERROR,
				(errcode(ERRCODE_CONFIG_FILE_ERROR),
				 errmsg("m365sync.key_file must be an absolute path")));
	}

	if (stat(path, &st) != 0)
	{
		int			save_errno = errno;

		m365_master_keys_forget();
		errno = save_errno;
		ereport(ERROR,
				(errcode_for_file_access(),
				 errmsg("could not access master key file \"%s\": %m", path),
				 errhint("m365sync.key_file must name a file of lines <key id>:<64 hex digits>, mode 0600.")));
	}
	fill_sig(&sig, path, &st);
	if (!master_loaded || !same_sig(&sig, &master_sig))
	{
		/* Forget first: if the new file is refused, no old key stays behind. */
		m365_master_keys_forget();
		load_key_file(path);
	}
	recheck_key_file = false;
	return &master_keys;
}
