/*
 * keyring.c — envelope encryption inside a backend (see keyring.h).
 *
 * Keeps unwrapped data keys in keycache.c's bounded cache (key bytes for
 * every account a worker polls, keyed EVP contexts for the recent ones),
 * unwrapped under the master keys of masterkey.c (all dropped when
 * masterkey.c's generation moves); reads and writes m365sync.data_keys
 * through SPI as the current user, so row level security applies to user functions. It never
 * writes plaintext anywhere, never falls back to it, and never puts a key, a
 * value or a decrypted byte into a message. Keys in memory are wiped when
 * replaced, evicted, invalidated and at backend exit.
 *
 * Cached data keys are dropped
 * when data_keys changes in any backend: a statement trigger on the table
 * sends a relcache invalidation, which every backend sees before its next
 * statement, so a purge in one session shreds the key in all of them. On
 * Citus the trigger fires on the shard's node, so it invalidates the
 * distributed table's own entry there too, and the purge invalidates it on
 * the node it runs on (the coordinator, where events() decrypts).
 */
#include "postgres.h"

#include <limits.h>

#include "access/htup_details.h"
#include "access/xact.h"
#include "catalog/namespace.h"
#include "catalog/pg_type.h"
#include "commands/trigger.h"
#include "executor/spi.h"
#include "fmgr.h"
#include "lib/stringinfo.h"
#include "storage/ipc.h"
#include "utils/builtins.h"
#include "utils/inval.h"
#include "utils/lsyscache.h"
#include "utils/memutils.h"
#include "utils/rel.h"

#include "crypto.h"
#include "envelope.h"
#include "keycache.h"
#include "keyfile.h"
#include "keyring.h"
#include "masterkey.h"
#include "spi_util.h"

#define MAC_KEY_LABEL		"m365sync/v1 keyed hash"

/* ---- data key cache (keycache.c) ---- */

static Oid	data_keys_relid = InvalidOid;
static bool callbacks_registered = false;

static SPIPlanPtr select_plan = NULL;
static SPIPlanPtr insert_plan = NULL;

/*
 * A key being read or made, until it is in the cache: static, not on the
 * stack, so bytes left by an ERROR halfway are wiped by the next load or by
 * m365_forget_data_key(-1) (at the latest at backend exit).
 */
static struct
{
	uint32		generation;
	uint8		key[M365_KEY_BYTES];
} loading;

void
m365_forget_data_key(int64 account_id)
{
	m365_keycache_forget(account_id);
	if (account_id < 0)
		m365_secure_zero(&loading, sizeof(loading));
}

static void
forget_uncommitted(void)
{
	m365_keycache_forget_uncommitted();
}

/* Master keys wiped since we last looked: the data keys unwrapped under them go too. */
static uint64 dk_master_generation = 0;

static void
check_master_generation(void)
{
	uint64		g = m365_master_keys_generation();

	if (g != dk_master_generation)
	{
		m365_forget_data_key(-1);
		dk_master_generation = g;
	}
}

static void
keyring_xact_callback(XactEvent event, void *arg)
{
	/* a key file problem raised an ERROR after wiping the master keys */
	check_master_generation();

	switch (event)
	{
		case XACT_EVENT_COMMIT:
		case XACT_EVENT_PARALLEL_COMMIT:
			m365_keycache_commit();
			m365_master_keys_recheck();
			break;
		case XACT_EVENT_ABORT:
		case XACT_EVENT_PARALLEL_ABORT:
		case XACT_EVENT_PREPARE:
			/* A key created here may never exist: read it again if needed. */
			forget_uncommitted();
			m365_master_keys_recheck();
			break;
		default:
			break;
	}
}

static void
keyring_subxact_callback(SubXactEvent event, SubTransactionId mySubid,
						 SubTransactionId parentSubid, void *arg)
{
	if (event == SUBXACT_EVENT_ABORT_SUB)
		forget_uncommitted();
}

static void
keyring_relcache_callback(Datum arg, Oid relid)
{
	if (relid == InvalidOid || relid == data_keys_relid)
	{
		m365_forget_data_key(-1);
		data_keys_relid = InvalidOid;	/* looked up again on next load */
	}
}

static void
keyring_exit(int code, Datum arg)
{
	m365_master_keys_forget();
	check_master_generation();
	m365_crypto_release();
}

static void
register_callbacks(void)
{
	if (callbacks_registered)
		return;
	RegisterXactCallback(keyring_xact_callback, NULL);
	RegisterSubXactCallback(keyring_subxact_callback, NULL);
	CacheRegisterRelcacheCallback(keyring_relcache_callback, (Datum) 0);
	on_proc_exit(keyring_exit, (Datum) 0);
	callbacks_registered = true;
}

/* Callbacks in place and the master keys loaded and current, or ERROR. */
static void
keyring_ready(void)
{
	register_callbacks();
	(void) m365_master_keys();
	check_master_generation();
}

/* ---- data keys ---- */

static void
crypto_failed(M365CryptoStatus st, const char *what)
{
	ereport(ERROR,
			(errcode(ERRCODE_INTERNAL_ERROR),
			 errmsg("could not %s: %s", what, m365_crypto_status_text(st))));
}

/*
 * Wrap data_key under the current master key; writes the master key id used
 * into *master_id.
 */
static M365CryptoStatus
wrap_data_key(int64 account_id, uint32 generation, const uint8 *data_key,
			  uint8 *wrapped, const char **master_id)
{
	const M365MasterKey *mk = &m365_master_keys()->keys[0];
	uint8		aad[M365_WRAP_AAD_MAX];
	size_t		aadlen = m365_envelope_wrap_aad(aad, account_id, generation, mk->id);

	*master_id = mk->id;
	return m365_wrap_key(mk->key, aad, aadlen, data_key, wrapped);
}

/* The ids of the key file's keys, for a message ("k2", "k1"); ids are not secret. */
static char *
key_ids_text(const M365KeySet *set)
{
	StringInfoData buf;
	int			i;

	initStringInfo(&buf);
	for (i = 0; i < set->nkeys; i++)
		appendStringInfo(&buf, "%s\"%s\"", i > 0 ? ", " : "", set->keys[i].id);
	return buf.data;
}

/*
 * Unwrap a data key. A key file without the master key, or with another key
 * under its id, is the usual cause (a restore onto a server with another key
 * file), so the messages say so and name the key id; nothing is changed.
 */
static void
unwrap_data_key(int64 account_id, uint32 generation, const char *master_id,
				const uint8 *wrapped, size_t wrapped_len, uint8 *data_key)
{
	const M365KeySet *set = m365_master_keys();
	const M365MasterKey *mk = m365_keyset_find(set, master_id);
	uint8		aad[M365_WRAP_AAD_MAX];
	size_t		aadlen;
	M365CryptoStatus st;

	if (mk == NULL)
		ereport(ERROR,
				(errcode(ERRCODE_CONFIG_FILE_ERROR),
				 errmsg("the data key of account " INT64_FORMAT " is wrapped by master key \"%s\", which is not in m365sync.key_file",
						account_id, master_id),
				 errdetail("The key file holds only %s.", key_ids_text(set)),
				 errhint("Data restored from another server needs that server's key file. "
						 "Otherwise put the line of key \"%s\" back into the key file after the current key and reload; "
						 "remove an old key only after m365sync.rewrap_keys().", master_id)));
	aadlen = m365_envelope_wrap_aad(aad, account_id, generation, mk->id);
	st = m365_unwrap_key(mk->key, aad, aadlen, wrapped, wrapped_len, data_key);
	if (st == M365_CRYPTO_AUTH_FAILED || st == M365_CRYPTO_BAD_INPUT)
		ereport(ERROR,
				(errcode(ERRCODE_DATA_CORRUPTED),
				 errmsg("the data key of account " INT64_FORMAT " does not unwrap under master key \"%s\"",
						account_id, master_id),
				 errdetail("m365sync.key_file holds another key under the id \"%s\" than the one that wrapped it, "
						   "or the wrapped key was altered or moved from another account.", master_id),
				 errhint("Data restored from another server needs that server's key file.")));
	if (st != M365_CRYPTO_OK)
		crypto_failed(st, "unwrap a data key");
}

static Oid
lookup_data_keys_relid(void)
{
	Oid			nsp = get_namespace_oid("m365sync", true);

	return OidIsValid(nsp) ? get_relname_relid("data_keys", nsp) : InvalidOid;
}

/* Tell every backend of this server, at commit, to drop its cached data keys. */
static void
invalidate_data_keys_caches(void)
{
	Oid			relid = lookup_data_keys_relid();

	if (OidIsValid(relid))
		CacheInvalidateRelcacheByRelid(relid);
}

/*
 * Read the account's data key row (SPI, current user, RLS applies) and
 * unwrap it into loading. Returns false when there is none.
 */
static bool
load_data_key(int64 account_id)
{
	M365SpiArgs a = {0};
	bool		found = false;

	m365_spi_arg_int8(&a, account_id);
	SPI_connect();
	if (m365_spi_run_saved(&select_plan,
						   "SELECT generation, master_key_id, wrapped_key "
						   "FROM m365sync.data_keys WHERE account_id = $1",
						   &a, SPI_OK_SELECT, 1, "reading a data key") == 1)
	{
		bool		isnull[3];
		Datum		generation = m365_spi_get_datum(1, &isnull[0]);
		Datum		master_id = m365_spi_get_datum(2, &isnull[1]);
		Datum		wrapped = m365_spi_get_datum(3, &isnull[2]);
		bytea	   *w;
		char	   *mid;

		if (isnull[0] || isnull[1] || isnull[2])
			ereport(ERROR,
					(errcode(ERRCODE_DATA_CORRUPTED),
					 errmsg("the data key row of account " INT64_FORMAT " is incomplete", account_id)));
		w = DatumGetByteaPP(wrapped);
		mid = TextDatumGetCString(master_id);
		unwrap_data_key(account_id, (uint32) DatumGetInt32(generation), mid,
						(const uint8 *) VARDATA_ANY(w), VARSIZE_ANY_EXHDR(w), loading.key);
		loading.generation = (uint32) DatumGetInt32(generation);
		found = true;
	}
	if (!OidIsValid(data_keys_relid))
		data_keys_relid = lookup_data_keys_relid();
	SPI_finish();
	return found;
}

/*
 * Create the account's data key in the caller's transaction, into loading;
 * false if one appeared meanwhile.
 */
static bool
create_data_key(int64 account_id)
{
	uint8		wrapped[M365_WRAPPED_KEY_BYTES];
	bytea	   *wrapped_value;
	const char *master_id;
	M365SpiArgs a = {0};
	M365CryptoStatus st;
	bool		created;

	st = m365_random_bytes(loading.key, M365_KEY_BYTES);
	if (st != M365_CRYPTO_OK)
		crypto_failed(st, "make a data key");
	loading.generation = 1;
	st = wrap_data_key(account_id, loading.generation, loading.key, wrapped, &master_id);
	if (st != M365_CRYPTO_OK)
	{
		m365_secure_zero(loading.key, M365_KEY_BYTES);
		crypto_failed(st, "wrap a data key");
	}

	SPI_connect();
	wrapped_value = palloc(VARHDRSZ + sizeof(wrapped));
	SET_VARSIZE(wrapped_value, VARHDRSZ + sizeof(wrapped));
	memcpy(VARDATA(wrapped_value), wrapped, sizeof(wrapped));
	m365_spi_arg_int8(&a, account_id);
	m365_spi_arg_text(&a, master_id);
	m365_spi_arg_bytea(&a, wrapped_value);
	created = m365_spi_run_saved(&insert_plan,
								 "INSERT INTO m365sync.data_keys "
								 "(account_id, generation, master_key_id, wrapped_key) "
								 "VALUES ($1, 1, $2, $3) ON CONFLICT (account_id) DO NOTHING",
								 &a, SPI_OK_INSERT, 0, "storing a data key") == 1;
	SPI_finish();
	if (!created)
		m365_secure_zero(loading.key, M365_KEY_BYTES);
	return created;
}

/*
 * Key the entry's OpenSSL contexts from its key bytes: AES-GCM, and an HMAC
 * under a key of its own, so no hash is ever made under the AES key itself.
 * Sets both or neither.
 */
static void
make_contexts(M365DataKey *e)
{
	uint8		mac_key[32];
	M365GcmKey *gk;
	M365HmacKey *hk = NULL;
	bool		ok;

	gk = m365_gcm_key_new(e->key);
	ok = m365_hmac_sha256(e->key, M365_KEY_BYTES, (const uint8 *) MAC_KEY_LABEL, strlen(MAC_KEY_LABEL),
						  mac_key) == M365_CRYPTO_OK &&
		(hk = m365_hmac_key_new(mac_key, sizeof(mac_key))) != NULL;
	m365_secure_zero(mac_key, sizeof(mac_key));
	if (!ok || gk == NULL)
	{
		m365_gcm_key_free(gk);
		m365_hmac_key_free(hk);
		crypto_failed(M365_CRYPTO_INTERNAL, gk == NULL ? "set up a data key" : "derive a hash key");
	}
	e->gk = gk;
	e->hk = hk;
}

/*
 * The unwrapped data key of an account, with its keyed contexts, from the
 * cache or the table; NULL when it has none and create is false. The
 * pointer is valid until the next keyring call.
 */
static M365DataKey *
data_key(int64 account_id, bool create)
{
	M365DataKey *e = m365_keycache_find(account_id);
	bool		uncommitted = false;

	if (e == NULL)
	{
		m365_secure_zero(&loading, sizeof(loading));	/* bytes of a load that failed */
		if (!load_data_key(account_id))
		{
			if (!create)
				return NULL;
			if (create_data_key(account_id))
				uncommitted = true;
			else if (!load_data_key(account_id))
				ereport(ERROR,
						(errcode(ERRCODE_INSUFFICIENT_PRIVILEGE),
						 errmsg("the data key of account " INT64_FORMAT " is not visible to this user", account_id)));
		}
		e = m365_keycache_add(account_id, loading.generation, loading.key, uncommitted);
		m365_secure_zero(&loading, sizeof(loading));
	}
	m365_keycache_hot(e, make_contexts);
	return e;
}

/* ---- values ---- */

static size_t
value_aad(uint8 *aad, const char *table, const char *column,
		  int64 account_id, int64 row_id, const uint8 *header)
{
	size_t		n = m365_envelope_value_aad(aad, table, column, account_id, row_id, header);

	if (n == 0)
		elog(ERROR, "m365sync keyring: table or column name too long");
	return n;
}

bytea *
m365_encrypt(const char *table, const char *column,
			 int64 account_id, int64 row_id,
			 const char *plain, size_t len)
{
	M365DataKey *e;
	bytea	   *result;
	uint8	   *out;
	uint8		aad[M365_ENVELOPE_AAD_MAX];
	size_t		aadlen;
	M365CryptoStatus st;

	if (len > MaxAllocSize - VARHDRSZ - M365_ENVELOPE_OVERHEAD)
		ereport(ERROR,
				(errcode(ERRCODE_PROGRAM_LIMIT_EXCEEDED),
				 errmsg("value for %s.%s is too large to encrypt", table, column)));
	keyring_ready();
	result = palloc(VARHDRSZ + M365_ENVELOPE_OVERHEAD + len);
	SET_VARSIZE(result, VARHDRSZ + M365_ENVELOPE_OVERHEAD + len);
	out = (uint8 *) VARDATA(result);

	e = data_key(account_id, true);
	m365_envelope_write_header(out, account_id, e->generation);
	aadlen = value_aad(aad, table, column, account_id, row_id, out);
	st = m365_gcm_key_seal(e->gk, aad, aadlen, (const uint8 *) plain, len, out + M365_ENVELOPE_HEADER);
	if (st != M365_CRYPTO_OK)
		crypto_failed(st, "encrypt a value");
	return result;
}

bytea *
m365_encrypt_text(const char *table, const char *column,
				  int64 account_id, int64 row_id, const char *text)
{
	if (text == NULL)
		return NULL;
	return m365_encrypt(table, column, account_id, row_id, text, strlen(text));
}

static void
not_decryptable(const char *table, const char *column, int64 account_id,
				int64 row_id, const char *why)
{
	ereport(ERROR,
			(errcode(ERRCODE_DATA_CORRUPTED),
			 errmsg("could not decrypt %s.%s of row " INT64_FORMAT " of account " INT64_FORMAT,
					table, column, row_id, account_id),
			 errdetail("%s", why)));
}

char *
m365_decrypt(const char *table, const char *column,
			 int64 account_id, int64 row_id,
			 const bytea *value, size_t *len)
{
	const struct varlena *v = (const struct varlena *) value;
	const uint8 *in;
	size_t		inlen;
	size_t		plainlen;
	M365DataKey *e;
	uint8		aad[M365_ENVELOPE_AAD_MAX];
	size_t		aadlen;
	char	   *out;
	M365CryptoStatus st;
	M365EnvelopeStatus est;
	M365EnvelopeHeader hdr;

	if (VARATT_IS_EXTENDED(v) && !VARATT_IS_SHORT(v))
		v = pg_detoast_datum_packed(unconstify(struct varlena *, v));
	in = (const uint8 *) VARDATA_ANY(v);
	inlen = VARSIZE_ANY_EXHDR(v);

	est = m365_envelope_read_header(in, inlen, account_id, &hdr);
	if (est == M365_ENV_NOT_ENVELOPE)
		not_decryptable(table, column, account_id, row_id,
						"The value is not an m365sync envelope of a known version.");
	if (est == M365_ENV_OTHER_ACCOUNT)
		not_decryptable(table, column, account_id, row_id,
						"The value was encrypted for another account.");
	keyring_ready();
	e = data_key(account_id, false);
	if (e == NULL)
		not_decryptable(table, column, account_id, row_id,
						"The account has no data key: its data was erased (crypto-shredded).");
	if (hdr.generation != e->generation)
		not_decryptable(table, column, account_id, row_id,
						"The value was encrypted under a data key that no longer exists.");

	plainlen = inlen - M365_ENVELOPE_OVERHEAD;
	aadlen = value_aad(aad, table, column, account_id, row_id, in);
	out = palloc(plainlen + 1);
	st = m365_gcm_key_open(e->gk, aad, aadlen, in + M365_ENVELOPE_HEADER, inlen - M365_ENVELOPE_HEADER,
						   (uint8 *) out);
	if (st == M365_CRYPTO_AUTH_FAILED || st == M365_CRYPTO_BAD_INPUT)
		not_decryptable(table, column, account_id, row_id,
						"The value was altered, or copied from another row, column or account.");
	if (st != M365_CRYPTO_OK)
		crypto_failed(st, "decrypt a value");
	out[plainlen] = '\0';
	if (len)
		*len = plainlen;
	return out;
}

char *
m365_decrypt_text(const char *table, const char *column,
				  int64 account_id, int64 row_id, const bytea *value)
{
	if (value == NULL)
		return NULL;
	return m365_decrypt(table, column, account_id, row_id, value, NULL);
}

char *
m365_keyed_hash(int64 account_id, const char *purpose, const char *value, size_t len)
{
	M365DataKey *e;
	uint8	   *msg;
	uint8		mac[32];
	size_t		plen = strlen(purpose);
	char	   *out;
	M365CryptoStatus st;

	keyring_ready();
	e = data_key(account_id, true);
	msg = palloc(plen + 1 + len);
	memcpy(msg, purpose, plen);
	msg[plen] = '\0';
	memcpy(msg + plen + 1, value, len);
	st = m365_hmac_key_mac(e->hk, msg, plen + 1 + len, mac);
	pfree(msg);
	if (st != M365_CRYPTO_OK)
		crypto_failed(st, "hash a value");
	out = palloc(sizeof(M365_KEYED_HASH_PREFIX) + 64);
	memcpy(out, M365_KEYED_HASH_PREFIX, sizeof(M365_KEYED_HASH_PREFIX) - 1);
	hex_encode((const char *) mac, sizeof(mac), out + sizeof(M365_KEYED_HASH_PREFIX) - 1);
	out[sizeof(M365_KEYED_HASH_PREFIX) - 1 + 64] = '\0';
	return out;
}

/* ---- admin operations ---- */

int
m365_rewrap_data_keys(void)
{
	uint64		n;
	int64	   *account_ids;
	uint32	   *generations;
	char	  **old_ids;
	bytea	  **olds;

	keyring_ready();
	SPI_connect();
	/*
	 * No data key is added or changed until commit: a table lock, not FOR
	 * UPDATE of every row, which Citus refuses across shards (it takes the
	 * lock on every shard of a distributed data_keys).
	 */
	m365_spi_run("LOCK TABLE m365sync.data_keys IN SHARE ROW EXCLUSIVE MODE",
				 NULL, SPI_OK_UTILITY, "locking m365sync.data_keys");
	n = m365_spi_run("SELECT account_id, generation, master_key_id, wrapped_key "
					 "FROM m365sync.data_keys ORDER BY account_id",
					 NULL, SPI_OK_SELECT, "reading m365sync.data_keys");
	/* read every row first: each UPDATE below replaces the result */
	account_ids = palloc(sizeof(int64) * Max(n, 1));
	generations = palloc(sizeof(uint32) * Max(n, 1));
	old_ids = palloc(sizeof(char *) * Max(n, 1));
	olds = palloc(sizeof(bytea *) * Max(n, 1));
	for (uint64 i = 0; i < n; i++)
	{
		account_ids[i] = m365_spi_row_int8(i, 1);
		generations[i] = (uint32) m365_spi_row_int4(i, 2);
		old_ids[i] = m365_spi_row_text(i, 3, CurrentMemoryContext);
		olds[i] = m365_spi_row_bytea(i, 4, CurrentMemoryContext);
	}
	for (uint64 i = 0; i < n; i++)
	{
		uint8		key[M365_KEY_BYTES];
		uint8		wrapped[M365_WRAPPED_KEY_BYTES];
		bytea	   *new_value = palloc(VARHDRSZ + sizeof(wrapped));
		const char *new_id;
		M365SpiArgs args = {0};
		M365CryptoStatus st;

		/* unwrap_data_key leaves key unwritten or wiped when it fails */
		unwrap_data_key(account_ids[i], generations[i], old_ids[i],
						(const uint8 *) VARDATA_ANY(olds[i]), VARSIZE_ANY_EXHDR(olds[i]), key);
		st = wrap_data_key(account_ids[i], generations[i], key, wrapped, &new_id);
		m365_secure_zero(key, sizeof(key));
		if (st != M365_CRYPTO_OK)
			crypto_failed(st, "wrap a data key");

		SET_VARSIZE(new_value, VARHDRSZ + sizeof(wrapped));
		memcpy(VARDATA(new_value), wrapped, sizeof(wrapped));
		m365_spi_arg_int8(&args, account_ids[i]);
		m365_spi_arg_text(&args, new_id);
		m365_spi_arg_bytea(&args, new_value);
		m365_spi_run("UPDATE m365sync.data_keys SET master_key_id = $2, "
					 "wrapped_key = $3, rewrapped_at = pg_catalog.now() "
					 "WHERE account_id = $1",
					 &args, SPI_OK_UPDATE, "rewrapping m365sync.data_keys");
	}
	SPI_finish();
	m365_forget_data_key(-1);
	if (n > INT_MAX)
		elog(ERROR, "too many data keys");
	return (int) n;
}

void
m365_destroy_data_key(int64 account_id)
{
	M365SpiArgs args = {0};

	m365_forget_data_key(account_id);
	m365_spi_arg_int8(&args, account_id);
	m365_spi_exec("DELETE FROM m365sync.data_keys WHERE account_id = $1",
				  &args, SPI_OK_DELETE, "deleting from m365sync.data_keys");
	m365_forget_data_key(account_id);
	/*
	 * Every backend of this server drops its cached keys at commit. The
	 * table's trigger does the same where the row lives, but on Citus that
	 * is the shard's node, and the coordinator's backends (which decrypt
	 * what events() reads) would not hear of it.
	 */
	invalidate_data_keys_caches();
}

/*
 * Statement trigger on m365sync.data_keys (UPDATE, DELETE, TRUNCATE): tell
 * every backend to drop its cached data keys, whoever changed the table.
 */
PG_FUNCTION_INFO_V1(m365sync_data_keys_changed);

Datum
m365sync_data_keys_changed(PG_FUNCTION_ARGS)
{
	TriggerData *trigdata = (TriggerData *) fcinfo->context;

	if (!CALLED_AS_TRIGGER(fcinfo))
		elog(ERROR, "m365sync_data_keys_changed: not called as a trigger");
	CacheInvalidateRelcache(trigdata->tg_relation);
	/* on a Citus node the table is a shard; backends watch m365sync.data_keys itself */
	if (lookup_data_keys_relid() != RelationGetRelid(trigdata->tg_relation))
		invalidate_data_keys_caches();
	m365_forget_data_key(-1);
	return PointerGetDatum(NULL);
}

/*
 * Row trigger before INSERT on m365sync.data_keys: a data key must unwrap
 * under the key file before it is stored. A pg_restore or psql restore onto
 * a server with another key file so fails at the data_keys rows with an
 * error naming the master key id (and, in one transaction, restores
 * nothing), instead of later at the first read.
 */
PG_FUNCTION_INFO_V1(m365sync_data_key_check);

Datum
m365sync_data_key_check(PG_FUNCTION_ARGS)
{
	TriggerData *trigdata = (TriggerData *) fcinfo->context;
	TupleDesc	desc;
	HeapTuple	tup;
	bool		isnull[4];
	Datum		account_id;
	Datum		generation;
	Datum		master_id;
	Datum		wrapped;
	bytea	   *w;
	uint8		key[M365_KEY_BYTES];

	if (!CALLED_AS_TRIGGER(fcinfo) || !TRIGGER_FIRED_FOR_ROW(trigdata->tg_event) ||
		!TRIGGER_FIRED_BEFORE(trigdata->tg_event) || !TRIGGER_FIRED_BY_INSERT(trigdata->tg_event))
		elog(ERROR, "m365sync_data_key_check: not called as a row trigger before insert");
	keyring_ready();
	tup = trigdata->tg_trigtuple;
	desc = RelationGetDescr(trigdata->tg_relation);
	account_id = heap_getattr(tup, SPI_fnumber(desc, "account_id"), desc, &isnull[0]);
	generation = heap_getattr(tup, SPI_fnumber(desc, "generation"), desc, &isnull[1]);
	master_id = heap_getattr(tup, SPI_fnumber(desc, "master_key_id"), desc, &isnull[2]);
	wrapped = heap_getattr(tup, SPI_fnumber(desc, "wrapped_key"), desc, &isnull[3]);
	if (isnull[0] || isnull[1] || isnull[2] || isnull[3])
		return PointerGetDatum(tup);	/* the NOT NULL constraints answer */
	w = DatumGetByteaPP(wrapped);
	unwrap_data_key(DatumGetInt64(account_id), (uint32) DatumGetInt32(generation),
					TextDatumGetCString(master_id),
					(const uint8 *) VARDATA_ANY(w), VARSIZE_ANY_EXHDR(w), key);
	m365_secure_zero(key, sizeof(key));
	return PointerGetDatum(tup);
}
