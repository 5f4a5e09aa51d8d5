/*
 * jsonb_cjson.c — a cJSON tree straight into a jsonb value, without printing
 * it and parsing the text again (see jsonb_cjson.h).
 *
 * The pull stores every Graph event as jsonb; printing each one with cJSON
 * and feeding the text to jsonb_in cost a third of the worker's time in an
 * initial sync. Walking the tree into a JsonbValue tree gives the same jsonb:
 * duplicate keys keep the last value (as jsonb_in does), numbers become
 * numeric with cJSON's own shortest round-trip rendering, and a non-finite
 * number becomes null (cJSON prints it as null).
 *
 * Text is checked: every key and string must be valid UTF-8 (what Graph
 * sends) and is converted to the database encoding when that differs, so
 * nothing unreadable lands in a jsonb column. The walk never ereports on bad
 * text; it reports it, and the caller decides (the pull skips the event).
 * Strings are not copied: JsonbValueToJsonb copies them before we return.
 */
#include "postgres.h"

#include <math.h>

#include "common/hashfn.h"
#include "mb/pg_wchar.h"
#include "miscadmin.h"
#include "utils/builtins.h"
#include "utils/fmgrprotos.h"
#include "utils/jsonb.h"
#include "utils/memutils.h"
#include "utils/numeric.h"

#include "jsonb_cjson.h"

/* A C string from cJSON as a jsonb string; false when it is not valid text. */
static bool
text_value(const char *s, JsonbValue *v)
{
	int			len = (int) strlen(s);

	if (!pg_verify_mbstr(PG_UTF8, s, len, true))
		return false;
	if (GetDatabaseEncoding() != PG_UTF8 && GetDatabaseEncoding() != PG_SQL_ASCII)
	{
		s = pg_any_to_server(s, len, PG_UTF8);
		len = (int) strlen(s);
	}
	v->type = jbvString;
	v->val.string.val = (char *) s;
	v->val.string.len = len;
	return true;
}

/* A JSON number as numeric, rendered as cJSON renders it. */
static void
number_value(double d, JsonbValue *v)
{
	char		buf[32];

	if (!isfinite(d))
	{
		v->type = jbvNull;
		return;
	}
	v->type = jbvNumeric;
	if (d == floor(d) && fabs(d) < 1e15)
	{
		v->val.numeric = int64_to_numeric((int64) d);
		return;
	}
	snprintf(buf, sizeof(buf), "%1.15g", d);
	if (strtod(buf, NULL) != d)
		snprintf(buf, sizeof(buf), "%1.17g", d);
	v->val.numeric = DatumGetNumeric(DirectFunctionCall3(numeric_in, CStringGetDatum(buf),
														 ObjectIdGetDatum(InvalidOid),
														 Int32GetDatum(-1)));
}

/* A scalar node as a jsonb scalar; false on bad text. */
static bool
scalar_value(const cJSON *node, JsonbValue *v)
{
	if (cJSON_IsString(node))
		return node->valuestring != NULL && text_value(node->valuestring, v);
	if (cJSON_IsNumber(node))
		number_value(node->valuedouble, v);
	else if (cJSON_IsBool(node))
	{
		v->type = jbvBool;
		v->val.boolean = cJSON_IsTrue(node);
	}
	else
		v->type = jbvNull;
	return true;
}

/* An object's member, its key as stored, for putting the keys in jsonb's order. */
typedef struct Member
{
	const char *key;			/* in the database encoding */
	int32		len;
	int32		pos;			/* in the document: equal keys keep it; the node's index */
} Member;

/* jsonb's key order: shorter first, then bytewise; equal keys as they came. */
static int
member_cmp(const void *a, const void *b)
{
	const Member *ma = a;
	const Member *mb = b;
	int			r;

	if (ma->len != mb->len)
		return ma->len < mb->len ? -1 : 1;
	r = memcmp(ma->key, mb->key, ma->len);
	if (r != 0)
		return r;
	return ma->pos < mb->pos ? -1 : 1;
}

/*
 * The order of an object's keys, by shape. Graph sends objects of a few
 * shapes (an event, its start and end, body, location, an attendee...),
 * each with the same keys in the same order every time: the order jsonb
 * wants (and which duplicates drop) is found once per shape, by sorting,
 * and looked up after that by a hash of the keys' lengths and first bytes
 * (hashing every key cost more than the rest of the lookup), and checked
 * byte for byte.
 */
#define SHAPE_CACHE 32
#define SHAPE_MAX_MEMBERS 128

typedef struct Shape
{
	uint32		hash;
	int			n;				/* members in the document */
	int			bytes;			/* of the keys, each with its NUL */
	char	   *keys;			/* the keys in document order, each NUL-terminated */
	int			np;				/* pairs kept */
	int		   *order;			/* document positions of the pairs, in jsonb's order */
	char	  **converted;		/* keys in the database encoding, by pair; NULL when UTF-8 */
} Shape;

static Shape shapes[SHAPE_CACHE];	/* in TopMemoryContext */
static int	shape_next = 0;
static Shape scratch;			/* a shape not kept (too many members), in the caller's memory */

static const Shape *
find_shape(uint32 hash, int n, int bytes, const cJSON **nodes, const int *lens)
{
	for (int s = 0; s < SHAPE_CACHE; s++)
	{
		const Shape *sh = &shapes[s];
		const char *p = sh->keys;
		int			i;

		if (p == NULL || sh->hash != hash || sh->n != n || sh->bytes != bytes)
			continue;
		for (i = 0; i < n; i++)
		{
			if (memcmp(p, nodes[i]->string, lens[i] + 1) != 0)
				break;
			p += lens[i] + 1;
		}
		if (i == n)
			return sh;
	}
	return NULL;
}

/*
 * Check and sort the keys of a shape not seen yet, and keep it; NULL on
 * bad text. Equal keys sort by position, and the last one's value is kept
 * (as jsonb_in keeps it).
 */
static const Shape *
order_members(const cJSON **nodes, const int *lens, int n, uint32 hash, int bytes)
{
	Member	   *m = palloc(sizeof(Member) * Max(n, 1));
	bool		keep = n <= SHAPE_MAX_MEMBERS;
	MemoryContext cxt = keep ? TopMemoryContext : CurrentMemoryContext;
	bool		convert = GetDatabaseEncoding() != PG_UTF8 && GetDatabaseEncoding() != PG_SQL_ASCII;
	Shape	   *sh;
	char	   *p;
	int			np = 0;

	for (int i = 0; i < n; i++)
	{
		JsonbValue	key;

		if (!text_value(nodes[i]->string, &key))
		{
			pfree(m);
			return NULL;
		}
		m[i].key = key.val.string.val;
		m[i].len = key.val.string.len;
		m[i].pos = i;
	}
	qsort(m, n, sizeof(Member), member_cmp);
	if (keep)
	{
		sh = &shapes[shape_next];
		shape_next = (shape_next + 1) % SHAPE_CACHE;
		if (sh->keys)
		{
			pfree(sh->keys);
			pfree(sh->order);
			if (sh->converted)
			{
				for (int k = 0; k < sh->np; k++)
					pfree(sh->converted[k]);
				pfree(sh->converted);
			}
		}
	}
	else
		sh = &scratch;
	/* not found, nor freed again, until complete */
	sh->keys = NULL;
	sh->order = NULL;
	sh->converted = NULL;
	sh->order = MemoryContextAlloc(cxt, sizeof(int) * Max(n, 1));
	sh->converted = convert ? MemoryContextAlloc(cxt, sizeof(char *) * Max(n, 1)) : NULL;
	for (int i = 0; i < n; i++)
	{
		if (i + 1 < n && m[i + 1].len == m[i].len && memcmp(m[i + 1].key, m[i].key, m[i].len) == 0)
			continue;
		if (convert)
			sh->converted[np] = MemoryContextStrdup(cxt, m[i].key);
		sh->order[np++] = m[i].pos;
	}
	pfree(m);
	sh->np = np;
	sh->hash = hash;
	sh->n = n;
	sh->bytes = bytes;
	p = MemoryContextAlloc(cxt, Max(bytes, 1));
	sh->keys = p;
	for (int i = 0; i < n; i++)
	{
		memcpy(p, nodes[i]->string, lens[i] + 1);
		p += lens[i] + 1;
	}
	return sh;
}

/*
 * Build one node and its children as a JsonbValue tree in *v; false on bad
 * text. Containers are built whole (an object's pairs already in jsonb's
 * order, duplicate keys reduced to the last, as pushJsonbValue leaves
 * them), so JsonbValueToJsonb converts the tree at once, without the parse
 * state's copying of every value.
 */
static bool
build_node(const cJSON *node, JsonbValue *v)
{
	const cJSON *c;
	int			n = 0;

	if (!cJSON_IsObject(node) && !cJSON_IsArray(node))
		return scalar_value(node, v);
	check_stack_depth();		/* cJSON nests up to CJSON_NESTING_LIMIT */
	for (c = node->child; c != NULL; c = c->next)
		n++;
	if (cJSON_IsArray(node))
	{
		JsonbValue *elems = palloc(sizeof(JsonbValue) * Max(n, 1));

		n = 0;
		for (c = node->child; c != NULL; c = c->next)
			if (!build_node(c, &elems[n++]))
				return false;
		v->type = jbvArray;
		v->val.array.elems = elems;
		v->val.array.nElems = n;
		v->val.array.rawScalar = false;
	}
	else
	{
		const cJSON **nodes = palloc(sizeof(cJSON *) * Max(n, 1));
		int		   *lens = palloc(sizeof(int) * Max(n, 1));
		const Shape *shape;
		JsonbPair  *pairs = palloc(sizeof(JsonbPair) * Max(n, 1));
		uint32		hash = (uint32) n;
		int			bytes = 0;

		n = 0;
		for (c = node->child; c != NULL; c = c->next)
		{
			if (c->string == NULL)
				return false;
			lens[n] = (int) strlen(c->string);
			/* cheap: find_shape compares the keys byte for byte anyway */
			hash = hash_combine(hash, (uint32) lens[n] << 8 | (unsigned char) c->string[0]);
			bytes += lens[n] + 1;
			nodes[n++] = c;
		}
		shape = find_shape(hash, n, bytes, nodes, lens);
		if (shape == NULL)
			shape = order_members(nodes, lens, n, hash, bytes);
		if (shape == NULL)
			return false;
		for (int k = 0; k < shape->np; k++)
		{
			int			i = shape->order[k];

			/* the same bytes as the keys checked when the shape was made: valid */
			pairs[k].key.type = jbvString;
			pairs[k].key.val.string.val = shape->converted ? shape->converted[k] : nodes[i]->string;
			pairs[k].key.val.string.len = shape->converted ? (int) strlen(shape->converted[k]) : lens[i];
			pairs[k].order = k;
			if (!build_node(nodes[i], &pairs[k].value))
				return false;
		}
		v->type = jbvObject;
		v->val.object.pairs = pairs;
		v->val.object.nPairs = shape->np;
		pfree(nodes);
		pfree(lens);
	}
	return true;
}

Jsonb *
m365_cjson_to_jsonb(const cJSON *node)
{
	JsonbValue	v;

	if (!build_node(node, &v))
		return NULL;
	return JsonbValueToJsonb(&v);
}
