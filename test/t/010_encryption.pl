# Encryption at rest (issue 3), what needs a server of its own: the master
# key file refused when readable by others, missing, malformed, unset or
# inside the data directory (the server keeps running and recovers when the
# file is fixed); rotation with rewrap_keys and a restart; a purge in one
# session shreds the key cached by another, also in a session holding more
# accounts' keys than its cache; and nothing written — data files,
# WAL, server log — holds a marker string of the content or the master key.
#
# Rows are written as the superuser through the internal helper
# m365sync._encrypt_jsonb/_encrypt_text (granted to nobody). Markers are
# assembled inside SQL ('ATR' || 'EST-…') because the test cluster logs every
# statement: the grep must find only what went through m365sync.
use strict;
use warnings;
use lib "$ENV{M365_SRC}/test/t/lib";
use M365Test;
use PostgreSQL::Test::Utils;
use Test::More;
use File::Copy qw(copy);
use File::Find;

# The server alone (no simulator), logging every statement as
# PostgreSQL::Test::Cluster does by default.
my $k1 = M365Test::random_hex(32);
my $t = M365Test->new(name => 'encryption', sim => 0, keys => [ "k1:$k1" ],
	conf => "log_statement = all\n");
my $node = $t->node;
my $keyfile = $t->keyfile;

# A user with an account, a calendar and $n events whose content carries
# the marker; one event has a 200 kB body so it is TOASTed.
$node->safe_psql('postgres', q{
CREATE FUNCTION public.tap_make_user(who text, marker text, n int) RETURNS bigint
LANGUAGE plpgsql AS $$
DECLARE
    acc bigint;
    cal bigint;
    ev bigint;
    k bigint;
BEGIN
    INSERT INTO m365sync.accounts (flowagent_user, mode, status)
    VALUES (who, 'delegated', 'connected') RETURNING account_id INTO acc;
    UPDATE m365sync.accounts
       SET mailbox = m365sync._encrypt_text('accounts', 'mailbox', acc, acc, marker || '@contoso.example'),
           refresh_token = m365sync._encrypt_text('accounts', 'refresh_token', acc, acc, 'rt-' || marker)
     WHERE account_id = acc;
    cal := nextval('m365sync.calendars_calendar_id_seq');
    INSERT INTO m365sync.calendars (account_id, calendar_id, graph_id, name)
    VALUES (acc, cal, 'cal-' || who, m365sync._encrypt_text('calendars', 'name', acc, cal, 'Calendar ' || marker));
    FOR i IN 1..n LOOP
        ev := nextval('m365sync.events_event_id_seq');
        INSERT INTO m365sync.events (account_id, event_id, calendar_id, start_at, end_at, content)
        VALUES (acc, ev, cal, now(), now() + interval '1 hour',
                m365sync._encrypt_jsonb('events', 'content', acc, ev, jsonb_build_object(
                    'subject', marker || ' subject ' || i,
                    'body', jsonb_build_object('contentType', 'text', 'content',
                        CASE WHEN i = 1 THEN repeat(marker || ' ', 10000)
                             ELSE 'Notes: ' || marker || ' — Grüße' END))));
    END LOOP;
    k := nextval('m365sync.conflicts_conflict_id_seq');
    INSERT INTO m365sync.conflicts (account_id, conflict_id, event_id, policy, kept, lost)
    VALUES (acc, k, ev, 'latest_wins', 'local',
            m365sync._encrypt_jsonb('conflicts', 'lost', acc, k, jsonb_build_object('subject', marker)));
    -- a rewritten row leaves a dead tuple behind
    UPDATE m365sync.events
       SET content = m365sync._encrypt_jsonb('events', 'content', account_id, event_id,
                                              jsonb_build_object('subject', marker || ' edited'))
     WHERE account_id = acc AND event_id = ev;
    RETURN acc;
END $$;
CREATE FUNCTION public.tap_decrypting(acc bigint) RETURNS bigint LANGUAGE sql AS $$
    SELECT count(*) FROM m365sync.events
     WHERE account_id = acc
       AND m365sync._decrypt_jsonb('events', 'content', account_id, event_id, content) ->> 'subject' IS NOT NULL
$$;
});

my $mark_tail = M365Test::random_hex(8);
my $marker = "ATREST-$mark_tail";
my $alice = $node->safe_psql('postgres',
	"SELECT public.tap_make_user('alice', 'ATR' || 'EST-$mark_tail', 50)");
is($node->safe_psql('postgres', "SELECT public.tap_decrypting($alice)"),
	'50', 'fifty events written and read back');

# psql with SQLSTATEs in error messages
sub try_sql
{
	my ($sql) = @_;
	my ($rc, $out, $err) = $node->psql('postgres', $sql,
		extra_params => [ '-v', 'VERBOSITY=verbose' ]);
	return ($rc, $out, $err);
}

sub set_key_file_setting
{
	my ($path) = @_;
	$node->safe_psql('postgres', "ALTER SYSTEM SET m365sync.key_file = '$path'");
	$node->reload;
	$node->poll_query_until('postgres',
		"SELECT current_setting('m365sync.key_file') = '$path'")
	  or die "setting did not change";
}

my $read_alice = "SELECT public.tap_decrypting($alice)";
my $write_new = "SELECT m365sync._encrypt_text('t', 'c', 777, 1, 'x')";

# ---- the key file is checked like ssl_key_file ----
chmod 0644, $keyfile;
my ($rc, $out, $err) = try_sql($read_alice);
like($err, qr/F0000: master key file ".*" has group or world access/,
	'key file mode 0644: refused');
like($err, qr/HINT:  Run chmod 600 "\Q$keyfile\E"/, 'the hint says chmod 600');
($rc, $out, $err) = try_sql($write_new);
like($err, qr/group or world access/, 'no write either with a refused key file');
is($node->safe_psql('postgres', 'SELECT count(*) FROM m365sync.data_keys WHERE account_id = 777'),
	'0', 'nothing was written');
is($node->safe_psql('postgres', 'SELECT 1'), '1', 'server keeps running');
chmod 0640, $keyfile;
($rc, $out, $err) = try_sql($read_alice);
like($err, qr/group or world access/, 'mode 0640 owned by the server user: refused');
chmod 0600, $keyfile;
is($node->safe_psql('postgres', $read_alice), '50', 'mode 0600: reads work again');

# ---- missing ----
rename $keyfile, "$keyfile.away";
($rc, $out, $err) = try_sql($read_alice);
like($err, qr/58P01: could not access master key file "\Q$keyfile\E": No such file or directory/,
	'missing key file: ERROR naming the file and the problem');
is($node->safe_psql('postgres', 'SELECT 1'), '1', 'server keeps running');
rename "$keyfile.away", $keyfile;

# ---- malformed: the error names the line, never the key ----
my @malformed = (
	[ [ "k1:" . substr($k1, 0, 63) ], qr/line 1: key "k1" has 63 characters after the colon, expected 64 hex digits/, 'short key' ],
	[ [ "k1:$k1", "k2:" . ('x' x 64) ], qr/line 2: key "k2" has a character that is not a hex digit/, 'bad hex on line 2' ],
	[ [ "k1:$k1", "# old", "k1:$k1" ], qr/line 3: key id "k1" appears a second time/, 'duplicate id' ],
	[ [], qr/key file holds no key/, 'empty file' ],
	[ [ "$k1" ], qr/line 1: expected <key id>:<64 hex digits>/, 'no key id' ],
);
foreach my $case (@malformed)
{
	my ($lines, $expect, $name) = @$case;
	$t->write_key_file($keyfile, @$lines);
	($rc, $out, $err) = try_sql($read_alice);
	like($err, qr/F0000: invalid master key file ".*": $expect/, "malformed key file ($name): ERROR names the problem");
	unlike($err, qr/\Q@{[substr($k1, 8, 16)]}\E/i, "malformed key file ($name): no key material in the message");
}
is($node->safe_psql('postgres', 'SELECT 1'), '1', 'server keeps running after malformed key files');
$t->write_key_file($keyfile, "k1:$k1");
is($node->safe_psql('postgres', $read_alice), '50', 'a good file again: reads work');

# ---- inside the data directory, unset (setting changed with a reload) ----
my $inside = $node->data_dir . '/m365sync.key';
copy($keyfile, $inside) or die "copy: $!";
chmod 0600, $inside;
set_key_file_setting($inside);
($rc, $out, $err) = try_sql($read_alice);
like($err, qr/master key file ".*" lies inside the data directory/, 'key file inside the data directory: refused');
set_key_file_setting('');
($rc, $out, $err) = try_sql($read_alice);
like($err, qr/m365sync\.key_file is not set/, 'key file unset: ERROR');
set_key_file_setting($keyfile);
unlink $inside;
is($node->safe_psql('postgres', $read_alice), '50', 'setting restored on SIGHUP: reads work');

# ---- rotation ----
my $k2 = M365Test::random_hex(32);
$t->write_key_file($keyfile, "k2:$k2", "k1:$k1");
is($node->safe_psql('postgres', $read_alice), '50', 'new first line: old data still reads');
my $bob = $node->safe_psql('postgres',
	"SELECT public.tap_make_user('bob', 'ATR' || 'EST-$mark_tail-bob', 3)");
is($node->safe_psql('postgres', "SELECT master_key_id FROM m365sync.data_keys WHERE account_id = $bob"),
	'k2', 'a new data key is wrapped under the new current key');

$t->write_key_file($keyfile, "k2:$k2");
($rc, $out, $err) = try_sql($read_alice);
like($err, qr/wrapped by master key "k1", which is not in m365sync\.key_file/,
	'old line removed before rewrap_keys: ERROR names the missing key');
$t->write_key_file($keyfile, "k2:$k2", "k1:$k1");

my $nkeys = $node->safe_psql('postgres', 'SELECT count(*) FROM m365sync.data_keys');
is($node->safe_psql('postgres', 'SELECT m365sync.rewrap_keys()'), $nkeys,
	'rewrap_keys returns how many keys it rewrapped');
is($node->safe_psql('postgres', "SELECT string_agg(DISTINCT master_key_id, ',') FROM m365sync.data_keys"),
	'k2', 'every data key is wrapped under k2');

$t->write_key_file($keyfile, "k2:$k2");
$node->restart;
is($node->safe_psql('postgres', $read_alice), '50', 'old line removed, restart: alice reads');
is($node->safe_psql('postgres', "SELECT public.tap_decrypting($bob)"), '3', 'bob reads');
is($node->safe_psql('postgres',
	"SELECT m365sync._decrypt_text('accounts', 'mailbox', account_id, account_id, mailbox) FROM m365sync.accounts WHERE account_id = $alice"),
	"$marker\@contoso.example", 'text values read after rotation');

# ---- a purge in one session shreds the key another session has cached ----
my $bg = $node->background_psql('postgres', on_error_stop => 0);
is($bg->query_safe("SELECT public.tap_decrypting($bob)"), '3', 'second session reads bob (key cached)');
$node->safe_psql('postgres', qq{
CREATE TABLE public.tap_backup AS SELECT * FROM m365sync.events WHERE account_id = $bob;
SELECT m365sync.purge_user('bob');
});
my ($bg_out, $bg_failed) = $bg->query(
	"SELECT m365sync._decrypt_jsonb('events', 'content', account_id, event_id, content) FROM public.tap_backup LIMIT 1");
ok($bg_failed && $bg->{stderr} =~ /could not decrypt events\.content/,
	'after purge_user elsewhere, the cached key is gone: the backup copy does not decrypt');
unlike($bg_out, qr/ATREST/, 'and nothing of it is shown');
$bg->quit;

# ---- one backend with more accounts than its key cache holds ----
# 17,000 accounts' keys, past the cache's 16,384 (the worker of a large
# installation): every value decrypts right, the least recently used keys
# are the ones evicted, and a rewrap and a purge still reach the cache.
# Autovacuum is off for data_keys meanwhile: its statistics update sends the
# relcache invalidation that empties every backend's cache.
my $many = 17000;
my $carol = $node->safe_psql('postgres',
	"SELECT public.tap_make_user('carol', 'ATR' || 'EST-$mark_tail-carol', 1)");
$node->safe_psql('postgres', qq{
ALTER TABLE m365sync.data_keys SET (autovacuum_enabled = off);
CREATE TABLE public.tap_many AS
  SELECT a AS acc, m365sync._encrypt_text('tap', 'v', a, 0, 'value-' || a) AS v
    FROM generate_series(1000001, 1000000 + $many) a;
CREATE TABLE public.tap_carol AS SELECT * FROM m365sync.events WHERE account_id = $carol;
});
my $decrypt_many = "SELECT count(*) FROM (SELECT * FROM public.tap_many ORDER BY acc) s "
  . "WHERE m365sync._decrypt_text('tap', 'v', acc, 0, v) = 'value-' || acc";
$bg = $node->background_psql('postgres', on_error_stop => 0);
is($bg->query_safe($decrypt_many), $many, "one session decrypts $many accounts' values, each with its own key");
is($bg->query_safe("SELECT public.tap_decrypting($carol)"), '1', '... and then carol\'s');
# Remove two key rows behind the caches' back (no trigger under the replica
# role): the session still holds the one it used recently, not the one used
# 17,000 accounts ago.
$node->safe_psql('postgres', q{
SET session_replication_role = replica;
DELETE FROM m365sync.data_keys WHERE account_id IN (1000001, 1001000);
});
is($bg->query_safe("SELECT m365sync._decrypt_text('tap', 'v', acc, 0, v) FROM public.tap_many WHERE acc = 1001000"),
	'value-1001000', 'a key used 16,000 accounts ago is still cached (more than the old 1,024)');
($bg_out, $bg_failed) = $bg->query("SELECT m365sync._decrypt_text('tap', 'v', acc, 0, v) FROM public.tap_many WHERE acc = 1000001");
ok($bg_failed && $bg->{stderr} =~ /account has no data key/,
	'the least recently used one was evicted: read again, it is gone');
$bg->{stderr} = '';    # query_safe refuses to go on with an error left in it
$node->safe_psql('postgres', q{
ALTER TABLE m365sync.data_keys RESET (autovacuum_enabled);
DELETE FROM public.tap_many WHERE acc IN (1000001, 1001000);
});
is($node->safe_psql('postgres', 'SELECT m365sync.rewrap_keys()'),
	$node->safe_psql('postgres', 'SELECT count(*) FROM m365sync.data_keys'), 'rewrap_keys of them all');
is($bg->query_safe($decrypt_many), $many - 2, 'after the rewrap elsewhere, the session decrypts every account');
is($bg->query_safe("SELECT public.tap_decrypting($carol)"), '1', '... and carol\'s again (key cached)');
$node->safe_psql('postgres', "SELECT m365sync.purge_user('carol')");
($bg_out, $bg_failed) = $bg->query(
	"SELECT m365sync._decrypt_jsonb('events', 'content', account_id, event_id, content) FROM public.tap_carol");
ok($bg_failed && $bg->{stderr} =~ /could not decrypt events\.content/,
	'after a purge elsewhere, the purged account\'s cached key is gone: its backup copy does not decrypt');
$bg->{stderr} = '';
is($bg->query_safe($decrypt_many), $many - 2, '... while every other account still decrypts');
$bg->quit;

# ---- at rest: data files, WAL and the log hold no marker and no key ----
# Control: the same grep finds a plain value written the ordinary way.
my $control = 'CTRL-' . M365Test::random_hex(8);
my ($ctrl_a, $ctrl_b) = (substr($control, 0, 4), substr($control, 4));
$node->safe_psql('postgres', "CREATE TABLE public.tap_plain AS SELECT '$ctrl_a' || '$ctrl_b' AS t");
$node->safe_psql('postgres', 'CHECKPOINT');

sub grep_tree
{
	my ($dir, @needles) = @_;
	my %hits = map { $_ => 0 } @needles;
	find(
		{
			no_chdir => 1,
			wanted => sub {
				return unless -f $_;
				open my $fh, '<:raw', $_ or return;
				local $/;
				my $data = <$fh>;
				close $fh;
				foreach my $n (@needles) { $hits{$n}++ if index($data, $n) >= 0; }
			}
		},
		$dir);
	return \%hits;
}

my $raw_k1 = pack('H*', $k1);
my $raw_k2 = pack('H*', $k2);
my $data = $node->data_dir;
foreach my $sub ('base', 'pg_wal')
{
	my $hits = grep_tree("$data/$sub", $marker, $k1, $k2, $raw_k1, $raw_k2, $control);
	ok($hits->{$control} > 0, "control: a plain value is found in $sub/");
	is($hits->{$marker}, 0, "no file in $sub/ holds the content marker");
	is($hits->{$k1} + $hits->{$k2} + $hits->{$raw_k1} + $hits->{$raw_k2}, 0,
		"no file in $sub/ holds a master key (hex or raw)");
}
my $all = grep_tree($data, $marker, $k1, $k2, $raw_k1, $raw_k2);
is($all->{$marker} + $all->{$k1} + $all->{$k2} + $all->{$raw_k1} + $all->{$raw_k2}, 0,
	'nothing anywhere in the data directory holds the marker or a key');

my $log = slurp_file($node->logfile);
like($log, qr/could not decrypt/, 'the log holds the decryption errors');
unlike($log, qr/\Q$marker\E/, 'the server log holds no content marker');
unlike($log, qr/\Q$k1\E|\Q$k2\E|\Q@{[substr($k1, 0, 12)]}\E|\Q@{[substr($k2, 0, 12)]}\E/i,
	'the server log holds no master key');

$node->stop;
done_testing();
