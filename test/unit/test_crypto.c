/*
 * test_crypto.c — unit tests of src/crypto.c outside a backend: known
 * answers (NIST GCM, SHA-256, RFC 4648 / RFC 7636 base64url), round trips
 * from empty to 4 MB, and every way a sealed value or wrapped key must fail:
 * a flipped bit anywhere, other associated data, another key, truncation.
 */
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "crypto.h"
#include "tap.h"

static void
from_hex(const char *hex, uint8_t *out)
{
	size_t		i;

	for (i = 0; hex[2 * i]; i++)
	{
		unsigned int b;

		sscanf(hex + 2 * i, "%2x", &b);
		out[i] = (uint8_t) b;
	}
}

static int
all_zero(const uint8_t *p, size_t len)
{
	size_t		i;

	for (i = 0; i < len; i++)
		if (p[i])
			return 0;
	return 1;
}

static void
known_answers(void)
{
	uint8_t		key[32] = {0};
	uint8_t		nonce[12] = {0};
	uint8_t		zero16[16] = {0};
	uint8_t		out[16 + M365_GCM_OVERHEAD];
	uint8_t		expect[32];
	uint8_t		digest[32];
	char		b64[64];
	uint8_t		odd[2] = {0xfb, 0xff};
	static const struct
	{
		const char *in;
		const char *out;
	}			b64_cases[] = {
		{"", ""}, {"f", "Zg"}, {"fo", "Zm8"}, {"foo", "Zm9v"},
		{"foob", "Zm9vYg"}, {"fooba", "Zm9vYmE"}, {"foobar", "Zm9vYmFy"},
	};
	size_t		i;

	/* GCM spec test case 13: AES-256, zero key and nonce, empty plaintext */
	ok(m365_gcm_seal_nonce(key, nonce, NULL, 0, NULL, 0, out) == M365_CRYPTO_OK,
	   "GCM seal of an empty plaintext succeeds");
	from_hex("530f8afbc74536b9a963b4f1c4cb738b", expect);
	ok(memcmp(out + 12, expect, 16) == 0, "GCM test case 13 tag matches");

	/* test case 14: one zero block */
	m365_gcm_seal_nonce(key, nonce, NULL, 0, zero16, 16, out);
	from_hex("cea7403d4d606b6e074ec5d3baf39d18" "d0d1c8a799996bf0265b98b5d48ab919", expect);
	ok(memcmp(out + 12, expect, 32) == 0, "GCM test case 14 ciphertext and tag match");
	ok(memcmp(out, nonce, 12) == 0, "sealed value starts with its nonce");

	m365_sha256((const uint8_t *) "abc", 3, digest);
	from_hex("ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad", expect);
	ok(memcmp(digest, expect, 32) == 0, "SHA-256 of \"abc\" matches FIPS 180-2");

	/* RFC 4231 test case 2: key "Jefe" */
	{
		const char *msg = "what do ya want for nothing?";

		ok(m365_hmac_sha256((const uint8_t *) "Jefe", 4, (const uint8_t *) msg, strlen(msg), digest) == M365_CRYPTO_OK,
		   "HMAC-SHA256 succeeds");
		from_hex("5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843", expect);
		ok(memcmp(digest, expect, 32) == 0, "HMAC-SHA256 matches RFC 4231 test case 2");
	}

	/* the same under a key set up once, used twice and for another value between */
	{
		const char *msg = "what do ya want for nothing?";
		M365HmacKey *hk = m365_hmac_key_new((const uint8_t *) "Jefe", 4);
		uint8_t		other[32];
		uint8_t		direct[32];

		ok(hk != NULL, "a keyed HMAC context is set up");
		ok(m365_hmac_key_mac(hk, (const uint8_t *) msg, strlen(msg), digest) == M365_CRYPTO_OK &&
		   memcmp(digest, expect, 32) == 0, "keyed HMAC matches RFC 4231 test case 2");
		m365_hmac_key_mac(hk, (const uint8_t *) "abc", 3, other);
		m365_hmac_sha256((const uint8_t *) "Jefe", 4, (const uint8_t *) "abc", 3, direct);
		ok(memcmp(other, direct, 32) == 0, "keyed HMAC of another value matches the one-shot HMAC");
		m365_hmac_key_mac(hk, (const uint8_t *) msg, strlen(msg), digest);
		ok(memcmp(digest, expect, 32) == 0, "keyed HMAC keeps its key across values");
		m365_hmac_key_free(hk);
	}

	for (i = 0; i < sizeof(b64_cases) / sizeof(b64_cases[0]); i++)
	{
		size_t		n = strlen(b64_cases[i].in);

		m365_base64url_encode((const uint8_t *) b64_cases[i].in, n, b64);
		ok(strcmp(b64, b64_cases[i].out) == 0 && m365_base64url_len(n) == strlen(b64_cases[i].out),
		   "base64url of \"%s\" is \"%s\" (RFC 4648, no padding)", b64_cases[i].in, b64_cases[i].out);
	}
	m365_base64url_encode(odd, 2, b64);
	ok(strcmp(b64, "-_8") == 0, "base64url uses - and _ instead of + and /");

	/* RFC 7636 appendix B: S256 code challenge of the example verifier */
	{
		const char *verifier = "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk";

		m365_sha256((const uint8_t *) verifier, strlen(verifier), digest);
		m365_base64url_encode(digest, 32, b64);
		ok(strcmp(b64, "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM") == 0,
		   "PKCE S256 challenge of the RFC 7636 example verifier");
	}
}

static void
round_trips(void)
{
	uint8_t		key[32];
	const char *aad = "events\0content\0account 7 row 9";
	size_t		aadlen = 31;
	static const size_t sizes[] = {0, 1, 15, 16, 17, 1000, 4 * 1024 * 1024};
	size_t		i;

	m365_random_bytes(key, sizeof(key));
	for (i = 0; i < sizeof(sizes) / sizeof(sizes[0]); i++)
	{
		size_t		n = sizes[i];
		uint8_t    *plain = malloc(n + 1);
		uint8_t    *sealed = malloc(n + M365_GCM_OVERHEAD);
		uint8_t    *back = malloc(n + 1);

		m365_random_bytes(plain, n);
		ok(m365_gcm_seal(key, (const uint8_t *) aad, aadlen, plain, n, sealed) == M365_CRYPTO_OK &&
		   m365_gcm_open(key, (const uint8_t *) aad, aadlen, sealed, n + M365_GCM_OVERHEAD, back) == M365_CRYPTO_OK &&
		   memcmp(plain, back, n) == 0,
		   "round trip of %zu bytes", n);
		if (n >= 16)
			ok(memmem(sealed, n + M365_GCM_OVERHEAD, plain, 16) == NULL,
			   "ciphertext of %zu bytes does not contain the plaintext", n);
		free(plain);
		free(sealed);
		free(back);
	}

	{
		const char *text = "Zürich — 会议 📅 same input";
		size_t		n = strlen(text);
		uint8_t		a[128],
					b[128];

		m365_gcm_seal(key, NULL, 0, (const uint8_t *) text, n, a);
		m365_gcm_seal(key, NULL, 0, (const uint8_t *) text, n, b);
		ok(memcmp(a, b, 12) != 0 && memcmp(a + 12, b + 12, n) != 0,
		   "sealing the same text twice gives fresh nonces and different ciphertexts");
	}
}

static void
failures(void)
{
	uint8_t		key[32],
				other[32];
	const char *msg = "Board meeting: acquisition of Contoso";
	size_t		n = strlen(msg);
	size_t		total = n + M365_GCM_OVERHEAD;
	uint8_t		sealed[128],
				copy[128],
				back[128];
	size_t		pos;
	int			all_fail = 1;
	int			wiped = 1;

	m365_random_bytes(key, 32);
	m365_random_bytes(other, 32);
	m365_gcm_seal(key, (const uint8_t *) "row 1", 5, (const uint8_t *) msg, n, sealed);

	for (pos = 0; pos < total; pos++)
	{
		memcpy(copy, sealed, total);
		copy[pos] ^= 0x01;
		memset(back, 0xAA, sizeof(back));
		if (m365_gcm_open(key, (const uint8_t *) "row 1", 5, copy, total, back) != M365_CRYPTO_AUTH_FAILED)
			all_fail = 0;
		else if (!all_zero(back, n))
			wiped = 0;
	}
	ok(all_fail, "a flipped bit in nonce, ciphertext or tag fails authentication (all %zu positions)", total);
	ok(wiped, "a failed open leaves no plaintext in the output buffer");
	ok(m365_gcm_open(key, (const uint8_t *) "row 2", 5, sealed, total, back) == M365_CRYPTO_AUTH_FAILED,
	   "other associated data (value moved to another row) fails");
	ok(m365_gcm_open(key, NULL, 0, sealed, total, back) == M365_CRYPTO_AUTH_FAILED,
	   "missing associated data fails");
	ok(m365_gcm_open(other, (const uint8_t *) "row 1", 5, sealed, total, back) == M365_CRYPTO_AUTH_FAILED,
	   "another key fails");
	ok(m365_gcm_open(key, (const uint8_t *) "row 1", 5, sealed, total - 1, back) == M365_CRYPTO_AUTH_FAILED,
	   "a truncated value fails");
	ok(m365_gcm_open(key, (const uint8_t *) "row 1", 5, sealed, M365_GCM_OVERHEAD - 1, back) == M365_CRYPTO_BAD_INPUT,
	   "a value shorter than nonce and tag is malformed");
	ok(m365_gcm_open(key, (const uint8_t *) "row 1", 5, sealed, total, back) == M365_CRYPTO_OK &&
	   memcmp(back, msg, n) == 0, "the untouched value still opens");
}

static void
key_wrapping(void)
{
	uint8_t		master[32],
				other[32],
				dk[32],
				back[32];
	uint8_t		wrapped[M365_WRAPPED_KEY_BYTES],
				copy[M365_WRAPPED_KEY_BYTES];
	const uint8_t *aad = (const uint8_t *) "account 7 gen 1 k1";

	m365_random_bytes(master, 32);
	m365_random_bytes(other, 32);
	m365_random_bytes(dk, 32);
	ok(M365_WRAPPED_KEY_BYTES == 61, "a wrapped key is 61 bytes (version, nonce, key, tag)");
	ok(m365_wrap_key(master, aad, 18, dk, wrapped) == M365_CRYPTO_OK && wrapped[0] == M365_WRAP_VERSION,
	   "wrap a data key");
	ok(memmem(wrapped, sizeof(wrapped), dk, 8) == NULL, "the wrapped form does not contain the key");
	ok(m365_unwrap_key(master, aad, 18, wrapped, sizeof(wrapped), back) == M365_CRYPTO_OK &&
	   memcmp(dk, back, 32) == 0, "unwrap gives the same data key");
	ok(m365_unwrap_key(master, (const uint8_t *) "account 8 gen 1 k1", 18, wrapped, sizeof(wrapped), back)
	   == M365_CRYPTO_AUTH_FAILED, "a wrapped key moved to another account does not unwrap");
	ok(m365_unwrap_key(other, aad, 18, wrapped, sizeof(wrapped), back) == M365_CRYPTO_AUTH_FAILED,
	   "another master key does not unwrap");
	ok(m365_unwrap_key(master, aad, 18, wrapped, sizeof(wrapped) - 1, back) == M365_CRYPTO_BAD_INPUT,
	   "a wrapped key of the wrong length is malformed");
	memcpy(copy, wrapped, sizeof(copy));
	copy[0] = 2;
	ok(m365_unwrap_key(master, aad, 18, copy, sizeof(copy), back) == M365_CRYPTO_BAD_INPUT,
	   "an unknown wrap version is malformed");
	memcpy(copy, wrapped, sizeof(copy));
	copy[30] ^= 0x80;
	ok(m365_unwrap_key(master, aad, 18, copy, sizeof(copy), back) == M365_CRYPTO_AUTH_FAILED,
	   "a tampered wrapped key does not unwrap");
}

static void
helpers(void)
{
	uint8_t		secret[32];

	memset(secret, 0x5c, sizeof(secret));
	ok(m365_secure_equal("abcdef", "abcdef", 6) && !m365_secure_equal("abcdef", "abcdeg", 6),
	   "constant-time compare tells equal from different");
	m365_secure_zero(secret, sizeof(secret));
	ok(all_zero(secret, sizeof(secret)), "secure zero wipes");
	m365_crypto_release();
	{
		uint8_t		key[32] = {1};
		uint8_t		out[M365_GCM_OVERHEAD + 3];
		uint8_t		back[3];

		ok(m365_gcm_seal(key, NULL, 0, (const uint8_t *) "abc", 3, out) == M365_CRYPTO_OK &&
		   m365_gcm_open(key, NULL, 0, out, sizeof(out), back) == M365_CRYPTO_OK &&
		   memcmp(back, "abc", 3) == 0, "contexts are made again after release");
	}
}

static void
keyed_contexts(void)
{
	uint8_t		raw[32];
	M365GcmKey *k;
	M365GcmKey *other;
	const char *msg = "Quarterly review 📈";
	size_t		n = strlen(msg);
	uint8_t		sealed[64],
				back[64];
	int			i,
				all_ok = 1;

	m365_random_bytes(raw, 32);
	k = m365_gcm_key_new(raw);
	ok(k != NULL, "a keyed context pair is made");
	for (i = 0; i < 1000; i++)
	{
		char		text[32];
		size_t		tl = (size_t) snprintf(text, sizeof(text), "value %d", i);

		if (m365_gcm_key_seal(k, (const uint8_t *) "ad", 2, (const uint8_t *) text, tl, sealed) != M365_CRYPTO_OK ||
			m365_gcm_key_open(k, (const uint8_t *) "ad", 2, sealed, tl + M365_GCM_OVERHEAD, back) != M365_CRYPTO_OK ||
			memcmp(back, text, tl) != 0)
			all_ok = 0;
	}
	ok(all_ok, "a keyed context seals and opens 1000 values in a row");
	m365_gcm_key_seal(k, (const uint8_t *) "ad", 2, (const uint8_t *) msg, n, sealed);
	ok(m365_gcm_open(raw, (const uint8_t *) "ad", 2, sealed, n + M365_GCM_OVERHEAD, back) == M365_CRYPTO_OK &&
	   memcmp(back, msg, n) == 0, "what a keyed context seals, the raw key opens");
	ok(m365_gcm_key_open(k, (const uint8_t *) "xx", 2, sealed, n + M365_GCM_OVERHEAD, back) == M365_CRYPTO_AUTH_FAILED,
	   "a keyed context refuses other associated data");
	other = m365_gcm_key_new((const uint8_t *) "0123456789abcdef0123456789abcdef");
	ok(m365_gcm_key_open(other, (const uint8_t *) "ad", 2, sealed, n + M365_GCM_OVERHEAD, back) == M365_CRYPTO_AUTH_FAILED,
	   "another keyed context refuses it");
	ok(m365_gcm_key_open(k, (const uint8_t *) "ad", 2, sealed, n + M365_GCM_OVERHEAD, back) == M365_CRYPTO_OK,
	   "a failure leaves the context usable");
	m365_gcm_key_free(other);
	m365_gcm_key_free(k);
	m365_gcm_key_free(NULL);
}

/* The nonce pool must not be shared by a parent and its forked child. */
static void
nonces_after_fork(void)
{
	uint8_t		key[32] = {7};
	uint8_t		mine[M365_GCM_OVERHEAD],
				theirs[M365_GCM_OVERHEAD];
	int			fds[2];
	pid_t		pid;
	int			status;

	m365_gcm_seal(key, NULL, 0, NULL, 0, mine);	/* the pool is filled now */
	if (pipe(fds) != 0 || (pid = fork()) < 0)
	{
		ok(0, "fork for the nonce test");
		return;
	}
	if (pid == 0)
	{
		m365_gcm_seal(key, NULL, 0, NULL, 0, theirs);
		if (write(fds[1], theirs, M365_NONCE_BYTES) != M365_NONCE_BYTES)
			_exit(1);
		_exit(0);
	}
	m365_gcm_seal(key, NULL, 0, NULL, 0, mine);
	waitpid(pid, &status, 0);
	ok(read(fds[0], theirs, M365_NONCE_BYTES) == M365_NONCE_BYTES &&
	   memcmp(mine, theirs, M365_NONCE_BYTES) != 0,
	   "parent and forked child never use the same next nonce");
	close(fds[0]);
	close(fds[1]);
}

int
main(void)
{
	known_answers();
	round_trips();
	failures();
	key_wrapping();
	helpers();
	keyed_contexts();
	nonces_after_fork();
	m365_crypto_release();
	return done_testing();
}
