/*
 * http_ca.c — the trust store of m365sync.ca_file (see http_ca.h).
 *
 * m365sync.ca_file adds certificates to the system store rather than
 * replacing it: CURLOPT_CAINFO alone would replace the system bundle, so we
 * read the system bundle (curl's built-in default path) and the extra file
 * and hand curl their concatenation. That works the same for every TLS
 * backend and does not depend on how a backend combines CAINFO and CAPATH.
 *
 * Why a file and not a blob: handed over as CURLOPT_CAINFO_BLOB (about
 * 200 kB with the system bundle), curl compares the blob byte by byte on
 * every reuse of a pooled connection, and (7.88) caches no parsed store for
 * a blob, so every new TLS connection parsed 200 kB of PEM: about 8% of a
 * no-change poll's CPU. So the concatenation is written once to a file
 * private to the server, <data directory>/pg_m365sync/ca-<sha256>.pem
 * (mode 0600, under a temporary name, then renamed: a backend never reads
 * half a file), and passed as CURLOPT_CAINFO: curl compares a short path
 * and keeps the parsed store in its CA cache (CURLOPT_CA_CACHE_TIMEOUT,
 * curl 7.87 and later). The name is the content's hash, so a changed
 * ca_file is a new path: curl's cache, which goes by path and time only,
 * can never keep trusting what the file no longer holds.
 *
 * Writing a bundle removes the other backends' bundles and left-over
 * temporary files of more than STALE_SECONDS (best effort). A backend
 * checks its file before each use and writes it again if it is gone. When
 * the file cannot be written (a read-only data directory), the bundle goes
 * to curl as a blob as before, with one LOG line (a CA bundle is public).
 */
#include "postgres.h"

#include <dirent.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "miscadmin.h"

#include "crypto.h"
#include "http_ca.h"
#include "http_util.h"
#include "settings.h"

#define CA_DIR			"pg_m365sync"
#define STALE_SECONDS	600

static struct
{
	char	   *data;			/* malloc'd concatenation */
	size_t		len;
	char		path[MAXPGPATH];	/* the ca_file it was built from */
	time_t		mtime;
	off_t		size;
	char		file[MAXPGPATH];	/* where it was written; "" when it could not be */
	bool		logged;			/* the fallback was logged once */
} ca;

/* Remove the other ca-*.pem and ca-*.tmp files of dir older than STALE_SECONDS. */
static void
remove_stale(const char *dir, const char *keep)
{
	DIR		   *d = opendir(dir);
	struct dirent *de;
	time_t		now = time(NULL);

	if (d == NULL)
		return;
	while ((de = readdir(d)) != NULL)
	{
		char		p[MAXPGPATH];
		struct stat st;
		size_t		n = strlen(de->d_name);

		if (strncmp(de->d_name, "ca-", 3) != 0 || n < 8 ||
			(strcmp(de->d_name + n - 4, ".pem") != 0 && strcmp(de->d_name + n - 4, ".tmp") != 0))
			continue;
		snprintf(p, sizeof(p), "%s/%s", dir, de->d_name);
		if (strcmp(p, keep) == 0 || lstat(p, &st) != 0 || !S_ISREG(st.st_mode) ||
			st.st_mtime > now - STALE_SECONDS)
			continue;
		(void) unlink(p);
	}
	closedir(d);
}

static bool
write_all(int fd, const char *data, size_t len)
{
	while (len > 0)
	{
		ssize_t		n = write(fd, data, len);

		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			return false;
		data += n;
		len -= (size_t) n;
	}
	return true;
}

/* Write ca.data to its content-addressed file and set ca.file; false (errno set) if not. */
static bool
write_bundle(void)
{
	uint8		digest[32];
	char		hex[65];
	char		dir[MAXPGPATH];
	char		final[MAXPGPATH];
	char		tmp[MAXPGPATH];
	struct stat st;
	int			fd;
	int			save_errno;

	ca.file[0] = '\0';
	if (DataDir == NULL || m365_sha256((const uint8 *) ca.data, ca.len, digest) != M365_CRYPTO_OK)
	{
		errno = EINVAL;
		return false;
	}
	for (int i = 0; i < 32; i++)
		snprintf(hex + 2 * i, 3, "%02x", digest[i]);
	snprintf(dir, sizeof(dir), "%s/%s", DataDir, CA_DIR);
	snprintf(final, sizeof(final), "%s/ca-%s.pem", dir, hex);
	if (mkdir(dir, S_IRWXU) != 0 && errno != EEXIST)
		return false;
	/* another backend wrote it already: the name says what it holds */
	if (stat(final, &st) == 0 && S_ISREG(st.st_mode) && (size_t) st.st_size == ca.len)
	{
		strlcpy(ca.file, final, sizeof(ca.file));
		return true;
	}
	snprintf(tmp, sizeof(tmp), "%s/ca-%s.%d.tmp", dir, hex, MyProcPid);
	fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | PG_BINARY, S_IRUSR | S_IWUSR);
	if (fd < 0)
		return false;
	if (!write_all(fd, ca.data, ca.len) || fsync(fd) != 0)
	{
		save_errno = errno;
		close(fd);
		unlink(tmp);
		errno = save_errno;
		return false;
	}
	if (close(fd) != 0 || rename(tmp, final) != 0)
	{
		save_errno = errno;
		unlink(tmp);
		errno = save_errno;
		return false;
	}
	strlcpy(ca.file, final, sizeof(ca.file));
	remove_stale(dir, final);
	return true;
}

/* Build ca.data from the system bundle and ca_file (stat'ed as *st); false if unreadable. */
static bool
build_bundle(const char *system_path, const struct stat *st)
{
	char	   *sys,
			   *extra,
			   *all;
	size_t		sys_len = 0,
				extra_len = 0;

	extra = m365_read_file(m365_ca_file, &extra_len);
	if (extra == NULL)
		return false;
	sys = m365_read_file(system_path, &sys_len);	/* may be absent: then only ca_file */
	all = malloc(sys_len + extra_len + 2);
	if (all == NULL)
	{
		free(sys);
		free(extra);
		return false;
	}
	if (sys)
		memcpy(all, sys, sys_len);
	all[sys_len] = '\n';
	memcpy(all + sys_len + 1, extra, extra_len);
	all[sys_len + 1 + extra_len] = '\n';
	free(sys);
	free(extra);
	free(ca.data);
	ca.data = all;
	ca.len = sys_len + extra_len + 2;
	strlcpy(ca.path, m365_ca_file, sizeof(ca.path));
	ca.mtime = st->st_mtime;
	ca.size = st->st_size;
	if (!write_bundle() && !ca.logged)
	{
		ereport(LOG,
				(errmsg("m365sync could not write its CA bundle under \"%s/%s\": %m", DataDir ? DataDir : "", CA_DIR),
				 errdetail("The bundle goes to curl in memory instead, which costs CPU on every new TLS connection.")));
		ca.logged = true;
	}
	return true;
}

bool
m365_http_ca_bundle(const char *system_path, M365CaBundle *out)
{
	struct stat st;

	out->file = NULL;
	out->data = NULL;
	out->len = 0;
	if (m365_ca_file == NULL || m365_ca_file[0] == '\0')
		return true;
	if (stat(m365_ca_file, &st) != 0)
		return false;
	if (ca.data == NULL || strcmp(ca.path, m365_ca_file) != 0 ||
		ca.mtime != st.st_mtime || ca.size != st.st_size)
	{
		if (!build_bundle(system_path, &st))
			return false;
	}
	else if (ca.file[0] != '\0' &&
			 (stat(ca.file, &st) != 0 || (size_t) st.st_size != ca.len))
		(void) write_bundle();	/* removed by another backend: again, or the blob */
	if (ca.file[0] != '\0')
		out->file = ca.file;
	else
	{
		out->data = ca.data;
		out->len = ca.len;
	}
	return true;
}
