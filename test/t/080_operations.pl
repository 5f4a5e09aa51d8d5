# Operations: what a DBA does around the extension loses nothing.
#
# - pg_dump / pg_restore (custom format), pg_dump / psql (plain) and
#   pg_dump --data-only into a database where CREATE EXTENSION already ran:
#   every row of every m365sync table comes back byte for byte (ids,
#   ciphertexts, wrapped keys, cursors, sequences), events() decrypts every
#   event, and the next round is an incremental delta that also pushes the
#   changes that were pending at dump time.
# - A restore onto a server whose key file lacks the master key (or holds
#   another key under its id) stops with an error naming the key id and
#   leaves nothing behind; with the right key file the same dump restores.
# - ALTER EXTENSION m365sync UPDATE from the shipped 0.1.0 while the worker
#   and FlowAgent write, and an upgraded catalog equal to a fresh 0.2.0 one.
use strict;
use warnings;
use lib "$ENV{M365_SRC}/test/t/lib";
use M365Test;
use File::Copy ();
use JSON::PP;
use Test::More;
use Time::HiRes qw(usleep);

my $json = JSON::PP->new->canonical;
sub lit { my ($s) = @_; $s =~ s/'/''/g; return "'$s'"; }

# ---- what is compared ------------------------------------------------------

# Every table and sequence pg_dump is told to keep (pg_extension.extconfig),
# as "name|rows (or last_value)|md5 of every row's text", one line each: the
# same lines mean the same rows, ids, ciphertexts and sequence positions.
sub state_query
{
	my ($node, $db) = @_;
	my @rel = split /\n/, $node->safe_psql($db // 'postgres',
		"SELECT c.oid::regclass::text || ' ' || c.relkind::text FROM pg_extension e, unnest(e.extconfig) x(cfg)"
		  . " JOIN pg_class c ON c.oid = x.cfg WHERE e.extname = 'm365sync' ORDER BY 1");
	return join("\nUNION ALL ", map {
		my ($rel, $kind) = split / /;
		$kind eq 'S'
		  ? "SELECT '$rel', last_value::text, is_called::text FROM $rel"
		  : "SELECT '$rel', count(*)::text, md5(coalesce(string_agg(x::text, '|' ORDER BY x::text), '')) FROM $rel x"
	} @rel) . "\nORDER BY 1";
}

# Every encrypted value of every table, decrypted (as superuser): the number
# that decrypt, and a digest of the plaintexts.
my $decrypt_all = q{
SELECT count(*) || ' values, md5 ' || md5(string_agg(v, '|' ORDER BY v)) FROM (
  SELECT m365sync._decrypt_jsonb('events', 'content', account_id, event_id, content)::text FROM m365sync.events
  UNION ALL SELECT m365sync._decrypt_jsonb('conflicts', 'lost', account_id, conflict_id, lost)::text FROM m365sync.conflicts
  UNION ALL SELECT m365sync._decrypt_text('accounts', 'mailbox', account_id, account_id, mailbox) FROM m365sync.accounts
  UNION ALL SELECT md5(m365sync._decrypt_text('accounts', 'access_token', account_id, account_id, access_token)) FROM m365sync.accounts
  UNION ALL SELECT md5(m365sync._decrypt_text('accounts', 'refresh_token', account_id, account_id, refresh_token)) FROM m365sync.accounts
  UNION ALL SELECT m365sync._decrypt_text('calendars', 'name', account_id, calendar_id, name) FROM m365sync.calendars
  UNION ALL SELECT md5(m365sync._decrypt_text('calendars', 'delta_link', account_id, calendar_id, delta_link)) FROM m365sync.calendars WHERE delta_link IS NOT NULL
  UNION ALL SELECT md5(m365sync._decrypt_text('subscriptions', 'client_state', account_id, 0, client_state)) FROM m365sync.subscriptions
  UNION ALL SELECT md5(m365sync._decrypt_text('app_config', 'client_secret', 0, 1, client_secret)) FROM m365sync.app_config
) d(v)};

# What a FlowAgent user sees through the API (to be run with the acting
# user set in the transaction).
my $user_view = "SELECT count(*) || ' events, md5 ' || md5(coalesce(string_agg(event_id || '=' || coalesce(subject, '')"
  . " || '\@' || start_at || '/' || sync_state, ',' ORDER BY event_id), ''))"
  . " FROM m365sync.events('2000-01-01', '2100-01-01')";

sub user_view
{
	my ($t, $db, $user) = @_;
	return $t->node->safe_psql($db, "BEGIN; SET LOCAL ROLE flowagent;"
		  . " SELECT set_config('m365sync.flowagent_user', '$user', true); $user_view; COMMIT;") =~ s/^.*\n//r;
}

# The counts the issue names, for the record.
my $counts_query = q{
SELECT 'accounts=' || (SELECT count(*) FROM m365sync.accounts)
    || ' calendars=' || (SELECT count(*) FROM m365sync.calendars)
    || ' events=' || (SELECT count(*) FROM m365sync.events)
    || ' pending_outbox=' || (SELECT count(*) FROM m365sync.outbox WHERE state = 'pending')
    || ' conflicts=' || (SELECT count(*) FROM m365sync.conflicts)
    || ' subscriptions=' || (SELECT count(*) FROM m365sync.subscriptions)
    || ' data_keys=' || (SELECT count(*) FROM m365sync.data_keys)
    || ' sync_runs=' || (SELECT count(*) FROM m365sync.sync_run_log)
    || ' max_event_id=' || (SELECT coalesce(max(event_id), 0) FROM m365sync.events)};

# ---- a database with everything in it ----------------------------------------

my $t = M365Test->new(name => 'ops', conf => "m365sync.sync_interval = '1h'\n");
my $node = $t->node;
$t->setup_app;
my $rx = $t->start_receiver;
$node->safe_psql('postgres', "ALTER SYSTEM SET m365sync.notification_url = '$rx/notify'; SELECT pg_reload_conf();");
my $ada = $t->add_sim_user('contoso.example', 'ada@contoso.example');
my $bob = $t->add_sim_user('contoso.example', 'bob@contoso.example');

my @d = map { my @t = gmtime(time + 86400 * $_); sprintf('%04d-%02d-%02d', $t[5] + 1900, $t[4] + 1, $t[3]) } 1 .. 9;
my $n_event = 0;
sub outlook_create
{
	my ($who, $subject) = @_;
	$n_event++;
	return $t->sim('POST', "/_sim/users/$who->{id}/events", { subject => $subject,
		start => { dateTime => sprintf("$d[$n_event % 9]T%02d:00:00", $n_event % 20), timeZone => 'UTC' },
		end => { dateTime => sprintf("$d[$n_event % 9]T%02d:30:00", $n_event % 20), timeZone => 'UTC' } });
}
sub outlook_edit { my ($who, $ev, $subject) = @_; $t->sim('PATCH', "/_sim/users/$who->{id}/events/$ev->{id}", { subject => $subject }); }
sub local_create
{
	my ($user, $subject, $db) = @_;
	$n_event++;
	my $e = { subject => $subject, body => { contentType => 'text', content => "agenda of $subject" },
		start => { dateTime => sprintf("$d[$n_event % 9]T%02d:00:00", $n_event % 20), timeZone => 'UTC' },
		end => { dateTime => sprintf("$d[$n_event % 9]T%02d:45:00", $n_event % 20), timeZone => 'UTC' } };
	return $t->as_user($user, 'SELECT m365sync.upsert_event(' . lit($json->encode($e)) . '::jsonb)', db => $db);
}
sub sync_now
{
	my ($account, $db) = @_;
	for (1 .. 200)
	{
		my $r = $t->as_admin("SELECT status || ':' || fetched || ':' || applied || ':' || pushed FROM m365sync.sync($account)",
			db => $db // 'postgres');
		return $r unless $r =~ /^busy/;
		usleep(100_000);
	}
	return 'busy';
}
sub quiet
{
	my ($db) = @_;
	return $node->poll_query_until($db // 'postgres',
		"SELECT (SELECT count(*) FROM m365sync.outbox WHERE state = 'pending'"
		  . "   AND coalesce(next_attempt_at, '-infinity') <= now()) = 0"
		  . " AND (SELECT count(*) FROM m365sync.sync_run_log WHERE finished_at IS NULL) = 0");
}
sub truth_subjects
{
	my ($who) = @_;
	return { map { $_->{subject} => 1 } @{ $t->sim('GET', "/_sim/users/$who->{id}/truth")->{events} } };
}

my @ada_outlook = map { outlook_create($ada, "Outlook ada $_") } 1 .. 5;
outlook_create($bob, "Outlook bob $_") for 1 .. 3;
my $a1 = $t->connect_user('flow-ada', 'ada@contoso.example');
my $a2 = $t->connect_user('flow-bob', 'bob@contoso.example');
ok($node->poll_query_until('postgres', "SELECT count(*) = 8 FROM m365sync.events"), 'both mailboxes synced (8 events)');
my $pushed = local_create('flow-ada', 'Local pushed');
ok(quiet() && $node->poll_query_until('postgres', "SELECT graph_id IS NOT NULL FROM m365sync.events WHERE event_id = $pushed"),
	'a local event is pushed');
ok($node->poll_query_until('postgres', "SELECT count(*) = 2 FROM m365sync.subscriptions"), 'each account has a subscription');

# Pushes now fail for a while (503), so local changes wait in the outbox.
for my $f ([ 'POST', '/events$' ], [ 'PATCH', '/events/' ], [ 'DELETE', '/events/' ])
{
	$t->sim('POST', '/_sim/faults', { method => $f->[0], route => $f->[1], kind => '503', retry_after => 2, probability => 1 });
}
# A conflict: the same event changed locally (not yet pushed) and in Outlook.
my $clash = $t->as_user('flow-ada', "SELECT event_id FROM m365sync.events('2000-01-01', '2100-01-01') WHERE subject = 'Outlook ada 1'");
$t->as_user('flow-ada', "SELECT m365sync.upsert_event('{\"subject\": \"Ada local edit\"}'::jsonb, $clash)");
outlook_edit($ada, $ada_outlook[0], 'Ada Outlook edit');
sync_now($a1);
ok($node->poll_query_until('postgres', "SELECT count(*) > 0 FROM m365sync.conflicts"), 'a conflict is recorded');
my @pending = map { local_create('flow-ada', "Pending ada $_") } 1 .. 2;
push @pending, local_create('flow-bob', 'Pending bob');
my $doomed = $t->as_user('flow-ada', "SELECT event_id FROM m365sync.events('2000-01-01', '2100-01-01') WHERE subject = 'Outlook ada 2'");
$t->as_user('flow-ada', "SELECT m365sync.delete_event($doomed)");
ok(quiet(), 'no round in flight');

# ---- the dumps: three formats, one snapshot -------------------------------------

my $dir = $t->{dir};
my $bg = $node->background_psql('postgres');
$bg->query_safe('BEGIN ISOLATION LEVEL REPEATABLE READ');
my $snap = $bg->query_safe('SELECT pg_export_snapshot()');
my $state_sql = state_query($node);
my $before = $bg->query_safe($state_sql);
my $before_plain = $bg->query_safe($decrypt_all);
my $before_counts = $bg->query_safe($counts_query);
my %before_view;
for my $u ('flow-ada', 'flow-bob')
{
	$before_view{$u} = $bg->query_safe("SET LOCAL ROLE flowagent; SELECT set_config('m365sync.flowagent_user', '$u', true);"
		  . " $user_view; RESET ROLE;") =~ s/^.*\n//r;
}
my $src = $node->connstr('postgres');
for my $dump ([ 'custom', '-Fc', "$dir/db.dump" ], [ 'plain', '-Fp', "$dir/db.sql" ],
	[ 'data-only', '-Fp', "$dir/data.sql", '--data-only' ])
{
	my ($rc, undef, $err) = $t->run_client('pg_dump', $dump->[1], @{$dump}[ 3 .. $#$dump ], "--snapshot=$snap",
		'-d', $src, '-f', $dump->[2]);
	is($rc, 0, "pg_dump ($dump->[0]) succeeds") or diag $err;
}
$bg->query_safe('COMMIT');
$bg->quit;
note "before dump: $before_counts";
like($before_counts, qr/accounts=2 calendars=\d+ events=\d+ pending_outbox=[1-9]\d* conflicts=[1-9]\d* subscriptions=2 /,
	'the dumped database has accounts, events, pending changes, conflicts and subscriptions');

# No plaintext in any dump: not a subject, a body, an address or a token.
{
	for my $f ("$dir/db.sql", "$dir/data.sql")
	{
		open my $fh, '<', $f or die $!;
		local $/;
		my $text = <$fh>;
		close $fh;
		ok($text !~ /Outlook ada|Pending ada|agenda of|ada\@contoso|bob\@contoso|\Q$t->{client_secret}\E/,
			"$f holds no subject, body, address or secret in clear");
	}
}

# ---- the restores ------------------------------------------------------------------

sub createdb { $node->safe_psql('postgres', "CREATE DATABASE $_[0]"); }

createdb('r_custom');
my ($rc, $out, $err) = $t->run_client('pg_restore', '--exit-on-error', '-d', $node->connstr('r_custom'), "$dir/db.dump");
is($rc, 0, 'pg_restore of the custom-format dump succeeds') or diag $err;

createdb('r_plain');
($rc, $out, $err) = $t->run_client('psql', '-X', '-q', '-v', 'ON_ERROR_STOP=1', '-d', $node->connstr('r_plain'), '-f', "$dir/db.sql");
is($rc, 0, 'psql restores the plain dump') or diag $err;

createdb('r_data');
$node->safe_psql('r_data', 'CREATE EXTENSION m365sync');
($rc, $out, $err) = $t->run_client('psql', '-X', '-q', '-1', '-v', 'ON_ERROR_STOP=1', '-d', $node->connstr('r_data'), '-f', "$dir/data.sql");
is($rc, 0, 'psql restores the data-only dump into a database with the extension created') or diag $err;

for my $db ('r_custom', 'r_plain', 'r_data')
{
	my $after = $node->safe_psql($db, $state_sql);
	note "$db restored: " . $node->safe_psql($db, $counts_query);
	is($after, $before, "$db: every table and sequence holds the same rows and positions");
	is($node->safe_psql($db, $decrypt_all), $before_plain, "$db: every encrypted value decrypts, to the same plaintext");
	is(user_view($t, $db, $_), $before_view{$_}, "$db: $_ sees the same events through events()") for 'flow-ada', 'flow-bob';
	is($node->safe_psql($db, "SELECT count(*) FROM pg_extension WHERE extname = 'm365sync' AND extversion = '0.2.0'"), '1',
		"$db: the extension is there at 0.2.0");
}

# New ids after a restore do not collide with restored ones.
my $new_id = local_create('flow-ada', 'After restore', 'r_plain');
cmp_ok($new_id, '>', $node->safe_psql('postgres', 'SELECT max(event_id) FROM m365sync.events'),
	'a new event after the restore takes a fresh event_id');

# ---- the next round is incremental --------------------------------------------------
# The original database stops syncing (its accounts disabled), so only the
# restored ones talk to the simulator from here on.
$node->safe_psql('postgres', "UPDATE m365sync.accounts SET status = 'disabled'");
ok($node->poll_query_until('postgres', "SELECT count(*) = 0 FROM m365sync.sync_run_log WHERE finished_at IS NULL"),
	'the original database is idle');

my $edits = 0;
for my $db ('r_plain', 'r_data')
{
	outlook_edit($ada, $ada_outlook[ 2 + $edits ], "Edited for $db");
	$edits++;
	like(sync_now($a1, $db), qr/^\w+:$edits:$edits:/, "$db: the next round fetches only the $edits Outlook edit(s) since the dump");
	like(sync_now($a2, $db), qr/^\w+:0:0:/, "$db: and nothing for an unchanged mailbox");
}

$t->sim('DELETE', '/_sim/faults');
$t->sim_clear_log;
outlook_edit($ada, $ada_outlook[4], 'Edited for r_custom');
$edits++;
my $full_events = $node->safe_psql('r_custom', "SELECT count(*) FROM m365sync.events WHERE account_id = $a1");
usleep(2_100_000);    # the pending pushes' Retry-After
like(sync_now($a1, 'r_custom'), qr/^ok:$edits:$edits:\d+$/, "r_custom: the next round fetches the $edits edits since the dump, not all $full_events events");
sync_now($a2, 'r_custom');
my @delta = grep { $_->{method} eq 'GET' && $_->{path} =~ m{/delta$} } @{ $t->sim_log };
ok(@delta && !grep({ ($_->{query} // '') !~ /(\$|%24)(delta|skip)token=/ } @delta),
	'every delta request continues from the restored cursor ($deltatoken), none starts over')
  or diag explain [ map { "$_->{path}?$_->{query}" } @delta ];
ok($node->poll_query_until('r_custom', "SELECT count(*) = 0 FROM m365sync.outbox WHERE state = 'pending'")
	  || (sync_now($a1, 'r_custom') && sync_now($a2, 'r_custom') && 0),
	'r_custom: every change pending at dump time is pushed');
my $ta = truth_subjects($ada);
my $tb = truth_subjects($bob);
ok($ta->{'Pending ada 1'} && $ta->{'Pending ada 2'} && $tb->{'Pending bob'}, 'the pending creates reached Outlook');
ok(!$ta->{'Outlook ada 2'}, 'the pending delete reached Outlook');
is($node->safe_psql('r_custom', "SELECT count(*) FROM m365sync.sync_run_log WHERE status = 'running'"), '0',
	'no round is left running in the restored history');
note "r_custom after the next round: " . $node->safe_psql('r_custom', $counts_query);

# ---- a server with another key file --------------------------------------------------

my $other_hex = join '', map { sprintf '%02x', int(rand(256)) } 1 .. 32;
my ($node2, $key2) = $t->new_node('otherkey', "k2:$other_hex\n");
sub restore_on_node2
{
	my ($db) = @_;
	$node2->safe_psql('postgres', "CREATE DATABASE $db");
	return $t->run_client('pg_restore', '--single-transaction', '--exit-on-error', '-d', $node2->connstr($db), "$dir/db.dump");
}
($rc, $out, $err) = restore_on_node2('wrong1');
isnt($rc, 0, 'restore onto a server whose key file lacks the master key fails');
like($err, qr/ERROR:\s+the data key of account \d+ is wrapped by master key "k1", which is not in m365sync\.key_file/,
	'the error names the missing key id') or diag $err;
like($err, qr/DETAIL:\s+The key file holds only "k2"/, 'its detail names the keys the file holds');
like($err, qr/HINT:.*another server needs that server's key file/, 'its hint says what to do');
unlike($err, qr/Outlook ada|Pending|agenda|contoso/, 'the error shows no content');
is($node2->safe_psql('wrong1', "SELECT count(*) FROM pg_namespace WHERE nspname = 'm365sync'"), '0',
	'nothing was restored (one transaction)');

# The same key id with other key bytes.
$t->write_key_file($key2, "k1:$other_hex\n");
$node2->reload;
($rc, $out, $err) = restore_on_node2('wrong2');
isnt($rc, 0, 'restore onto a server with another key under the same id fails');
like($err, qr/ERROR:\s+the data key of account \d+ does not unwrap under master key "k1"/, 'the error names the key id')
  or diag $err;
like($err, qr/DETAIL:.*holds another key under the id "k1"/, 'its detail names the likely cause');
is($node2->safe_psql('wrong2', "SELECT count(*) FROM pg_namespace WHERE nspname = 'm365sync'"), '0', 'nothing was restored');

# With the original key file the same dump restores on the other server.
File::Copy::copy($t->keyfile, $key2) or die $!;
chmod 0600, $key2;
$node2->reload;
($rc, $out, $err) = restore_on_node2('rightkey');
is($rc, 0, 'with the key file of the dumped server the restore succeeds') or diag $err;
is($node2->safe_psql('rightkey', $decrypt_all), $before_plain, 'and every value decrypts there');
$node2->stop;
$node->stop;

# ---- ALTER EXTENSION m365sync UPDATE from 0.1.0, under load --------------------------

my $u = M365Test->new(name => 'upgrade', version => '0.1.0', conf => "m365sync.sync_interval = '1h'\n");
my $un = $u->node;
is($un->safe_psql('postgres', "SELECT extversion FROM pg_extension WHERE extname = 'm365sync'"), '0.1.0',
	'the extension is created at the shipped 0.1.0 (test/upgrade/m365sync--0.1.0.sql)');
$u->setup_app;
my $carl = $u->add_sim_user('fabrikam.example', 'carl@fabrikam.example');
my $dora = $u->add_sim_user('fabrikam.example', 'dora@fabrikam.example');
my %sim_user = ('flow-carl' => $carl, 'flow-dora' => $dora);
my $un_event = 0;
sub u_outlook_create
{
	my ($who, $subject) = @_;
	$un_event++;
	return $u->sim('POST', "/_sim/users/$who->{id}/events", { subject => $subject,
		start => { dateTime => sprintf("$d[$un_event % 9]T%02d:00:00", $un_event % 20), timeZone => 'UTC' },
		end => { dateTime => sprintf("$d[$un_event % 9]T%02d:30:00", $un_event % 20), timeZone => 'UTC' } });
}
# FlowAgent's write: (event_id or undef, sqlstate)
sub u_local_create
{
	my ($user, $subject) = @_;
	$un_event++;
	my $e = { subject => $subject, body => { contentType => 'text', content => "notes of $subject" },
		start => { dateTime => sprintf("$d[$un_event % 9]T%02d:00:00", $un_event % 20), timeZone => 'UTC' },
		end => { dateTime => sprintf("$d[$un_event % 9]T%02d:45:00", $un_event % 20), timeZone => 'UTC' } };
	my ($out, $state, $msg) = $u->sql('SELECT m365sync.upsert_event(' . lit($json->encode($e)) . '::jsonb)',
		role => 'flowagent', user => $user);
	diag "upsert_event as $user: $state $msg" if $state ne '';
	return ($state eq '' ? $out : undef, $state);
}
sub u_quiet
{
	return $un->poll_query_until('postgres',
		"SELECT (SELECT count(*) FROM m365sync.outbox WHERE state = 'pending') = 0"
		  . " AND (SELECT count(*) FROM m365sync.sync_run_log WHERE finished_at IS NULL) = 0");
}
sub u_truth
{
	my ($who) = @_;
	my %n;
	$n{ $_->{subject} }++ for @{ $u->sim('GET', "/_sim/users/$who->{id}/truth")->{events} };
	return \%n;
}

my @carl_outlook = map { u_outlook_create($carl, "Outlook carl $_") } 1 .. 4;
u_outlook_create($dora, "Outlook dora $_") for 1 .. 4;
my %acct = ('flow-carl' => $u->connect_user('flow-carl', 'carl@fabrikam.example'),
	'flow-dora' => $u->connect_user('flow-dora', 'dora@fabrikam.example'));
ok($un->poll_query_until('postgres', 'SELECT count(*) = 8 FROM m365sync.events'), '0.1.0 syncs both mailboxes');
u_local_create('flow-carl', 'Carl pushed before');
ok(u_quiet(), 'and pushes a local event');

# Local changes pending at the upgrade: pushes fail (503) until later.
for my $f ([ 'POST', '/events$' ], [ 'PATCH', '/events/' ], [ 'DELETE', '/events/' ])
{
	$u->sim('POST', '/_sim/faults', { method => $f->[0], route => $f->[1], kind => '503', retry_after => 1, probability => 1 });
}
my @expect_remote = ('Carl pending 1', 'Carl pending 2', 'Dora pending 1');
u_local_create('flow-carl', $_) for 'Carl pending 1', 'Carl pending 2';
u_local_create('flow-dora', 'Dora pending 1');
my $carl_edit = $u->as_user('flow-carl', "SELECT event_id FROM m365sync.events('2000-01-01', '2100-01-01') WHERE subject = 'Outlook carl 1'");
$u->as_user('flow-carl', "SELECT m365sync.upsert_event('{\"subject\": \"Carl edited locally\"}'::jsonb, $carl_edit)");
my $carl_del = $u->as_user('flow-carl', "SELECT event_id FROM m365sync.events('2000-01-01', '2100-01-01') WHERE subject = 'Outlook carl 2'");
$u->as_user('flow-carl', "SELECT m365sync.delete_event($carl_del)");

# What 0.1.0 itself stored in clear (this cluster runs the 0.2.0 library
# already, which writes neither): the iCalUId in events.ical_uid, and a
# caller's made-up key in outbox.changed_fields.
$un->safe_psql('postgres', "UPDATE m365sync.events SET ical_uid = m365sync._decrypt_jsonb('events', 'content', account_id, event_id, content)->>'iCalUId'"
	  . " WHERE graph_id IS NOT NULL");
my $clear_uids = $un->safe_psql('postgres', "SELECT count(*) FROM m365sync.events WHERE ical_uid IS NOT NULL AND ical_uid !~ '^hmac:'");
cmp_ok($clear_uids, '>', 0, "$clear_uids events hold their iCalUId in clear, as 0.1.0 wrote it");
$un->safe_psql('postgres', "UPDATE m365sync.outbox SET changed_fields = changed_fields || '{Made-up-key}'::text[]"
	  . " WHERE event_id = $carl_edit AND state = 'pending'");

# What must come through the upgrade unchanged.
my $keys_sql = "SELECT md5(string_agg(d::text, '|' ORDER BY account_id)) FROM m365sync.data_keys d";
my $tokens_sql = "SELECT md5(string_agg(account_id || ':' || m365sync._decrypt_text('accounts', 'access_token', account_id, account_id, access_token)"
  . " || ':' || m365sync._decrypt_text('accounts', 'refresh_token', account_id, account_id, refresh_token), '|' ORDER BY account_id))"
  . " FROM m365sync.accounts";
my $events_sql = "SELECT string_agg(event_id || '=' || (m365sync._decrypt_jsonb('events', 'content', account_id, event_id, content)->>'subject'),"
  . " ',' ORDER BY event_id) FROM m365sync.events WHERE event_id NOT IN ($carl_edit, $carl_del)";
my $outbox_sql = "SELECT string_agg(account_id || '/' || outbox_id || '/' || event_id || '/' || op, ',' ORDER BY outbox_id)"
  . " FROM m365sync.outbox WHERE state = 'pending'";
my %pre = map { $_->[0] => $un->safe_psql('postgres', $_->[1]) }
  ([ keys => $keys_sql ], [ tokens => $tokens_sql ], [ events => $events_sql ], [ outbox => $outbox_sql ]);
note "before the upgrade: " . $un->safe_psql('postgres', $counts_query);
like($pre{outbox}, qr/(,.*){4}/, 'five local changes are pending');

# The upgrade holds its locks for 3 s, while FlowAgent writes, Outlook
# changes, the worker retries its pushes every second and sync() runs.
my ($alter_out, $alter_err) = ('', '');
my $alter = IPC::Run::start([ $un->installed_command('psql'), '-X', '-v', 'ON_ERROR_STOP=1', '-d', $un->connstr('postgres'), '-c',
	"BEGIN; ALTER EXTENSION m365sync UPDATE; SELECT pg_sleep(3); COMMIT;" ], '>', \$alter_out, '2>', \$alter_err);
my ($writes, $write_errors, $syncs, $sync_errors, $i) = (0, 0, 0, 0, 0);
my $t0 = time;
while (($alter->pumpable || $i < 10) && time - $t0 < 120)
{
	$alter->pump_nb if $alter->pumpable;
	$i++;
	for my $user ('flow-carl', 'flow-dora')
	{
		my ($id, $state) = u_local_create($user, "Load $user $i");
		$writes++;
		$write_errors++ if $state ne '';
		push @expect_remote, "Load $user $i" if $state eq '';
	}
	u_outlook_create($i % 2 ? $carl : $dora, "Outlook load $i");
	my ($r, $state, $msg) = $u->sql("SELECT status FROM m365sync.sync($acct{'flow-dora'})", role => 'dba');
	$syncs++;
	if ($state ne '') { $sync_errors++; diag "sync(): $state $msg"; }
}
ok($alter->finish, 'ALTER EXTENSION m365sync UPDATE succeeds while the worker and FlowAgent work') or diag $alter_err;
note "during the upgrade: $writes FlowAgent writes ($i rounds of the load loop), $syncs sync() calls";
is($write_errors, 0, "none of the $writes FlowAgent writes around and during the upgrade failed");
is($sync_errors, 0, 'no sync() call failed');
is($un->safe_psql('postgres', "SELECT extversion FROM pg_extension WHERE extname = 'm365sync'"), '0.2.0', 'the extension is at 0.2.0');

is($un->safe_psql('postgres', $keys_sql), $pre{keys}, 'every data key is unchanged');
is($un->safe_psql('postgres', $tokens_sql), $pre{tokens}, 'every token decrypts to the same value');
is($un->safe_psql('postgres', $events_sql . " AND event_id <= " . ($pre{events} =~ /(\d+)=[^,]*$/)[0]), $pre{events},
	'every event from before the upgrade is there with its event_id and content');
my $still = $un->safe_psql('postgres', "SELECT count(*) FROM m365sync.outbox WHERE account_id || '/' || outbox_id || '/' || event_id || '/' || op"
	  . " = ANY (string_to_array(" . lit($pre{outbox}) . ", ',')) AND state = 'pending'");
is($still, scalar(split /,/, $pre{outbox}), 'every pending outbox entry is still pending');
is($un->safe_psql('postgres', "SELECT count(*) FROM m365sync.events WHERE ical_uid IS NOT NULL AND ical_uid !~ '^hmac:[0-9a-f]{64}\$'"), '0',
	'the upgrade replaced every clear iCalUId by its keyed hash');
is($un->safe_psql('postgres', "SELECT count(*) FROM m365sync.events WHERE ical_uid IS NOT NULL"
	  . " AND ical_uid = m365sync._decrypt_jsonb('events', 'content', account_id, event_id, content)->>'iCalUId'"), '0',
	'no event holds its iCalUId in clear');
is($un->safe_psql('postgres', "SELECT changed_fields FROM m365sync.outbox WHERE event_id = $carl_edit AND state = 'pending'"), '{subject}',
	'the upgrade kept only the Graph property names in changed_fields');

# Pushes work again: everything reaches Outlook, exactly once.
$u->sim('DELETE', '/_sim/faults');
ok(u_quiet(), 'the worker pushes every pending change after the upgrade');
is($un->safe_psql('postgres', "SELECT count(*) FROM m365sync.outbox WHERE state = 'failed'"), '0', 'none failed');
my %remote = (%{ u_truth($carl) }, %{ u_truth($dora) });
my @missing = grep { ($remote{$_} // 0) != 1 } @expect_remote;
is(scalar(@missing), 0, scalar(@expect_remote) . ' local creates (pending before and written during the upgrade) are each in Outlook once')
  or diag explain \@missing;
ok($remote{'Carl edited locally'} && !$remote{'Outlook carl 1'}, 'the pending edit reached Outlook');
ok(!$remote{'Outlook carl 2'}, 'the pending delete reached Outlook');
$u->as_admin("SELECT count(*) FROM m365sync.sync($acct{$_})") for 'flow-carl', 'flow-dora';
is($un->safe_psql('postgres', "SELECT count(*) FROM m365sync.events e"
	  . " WHERE m365sync._decrypt_jsonb('events', 'content', e.account_id, e.event_id, e.content)->>'subject' LIKE 'Outlook load %'"),
	$i, "the $i Outlook events made during the upgrade arrived");
is($un->safe_psql('postgres', "SELECT count(*) FROM (SELECT m365sync._decrypt_jsonb('events', 'content', account_id, event_id, content) FROM m365sync.events) x"),
	$un->safe_psql('postgres', 'SELECT count(*) FROM m365sync.events'), 'every event decrypts after the upgrade');
note "after the upgrade: " . $un->safe_psql('postgres', $counts_query);

# ---- an upgraded catalog is a fresh one ---------------------------------------------
# pg_dump --binary-upgrade writes every member of an extension (plain
# pg_dump writes only CREATE EXTENSION): tables with their columns in
# order, defaults, constraints, storage and options, indexes, triggers,
# policies, RLS, views, types, sequences, functions with SECURITY DEFINER,
# search_path and owner, every GRANT, comments. Oids, xids, sequence
# positions (data) and the extconfig oid lists differ between databases and
# are left out; extconfig is compared by name below.
$un->safe_psql('postgres', 'CREATE DATABASE fresh');
$un->safe_psql('fresh', 'CREATE EXTENSION m365sync');
sub catalog
{
	my ($db) = @_;
	my ($rc, $out, $err) = $u->run_client('pg_dump', '--binary-upgrade', '--schema-only', '--exclude-schema=public',
		'-d', $un->connstr($db));
	die "pg_dump --binary-upgrade $db: $err" if $rc != 0;
	my @l = grep { !/binary_upgrade_set_next_|^SELECT pg_catalog\.setval\(|^\\(un)?restrict |relfrozenxid = |^WHERE oid = '\d+';$/ } split /\n/, $out;
	s/(binary_upgrade_create_empty_extension\('m365sync', 'm365sync', false, '[^']*'), .*/$1, <extconfig>)/ for @l;
	return join("\n", @l) . "\n";
}
sub write_file { my ($f, $c) = @_; open my $fh, '>', $f or die $!; print $fh $c; close $fh; }
my %cat = map { $_ => catalog($_) } 'postgres', 'fresh';
write_file("$u->{dir}/catalog.$_.sql", $cat{$_}) for keys %cat;
my $cat_lines = () = $cat{fresh} =~ /\n/g;
my $members = () = $cat{fresh} =~ /^ALTER EXTENSION m365sync ADD /mg;
note "catalog of 0.1.0 upgraded vs 0.2.0 fresh: $cat_lines lines of pg_dump --binary-upgrade, $members member objects, "
  . ($cat{postgres} eq $cat{fresh} ? 'identical' : 'DIFFERENT');
ok($members > 40, "the comparison covers the extension's members ($members)");
ok($cat{postgres} eq $cat{fresh}, 'the upgraded catalog equals a fresh 0.2.0 install')
  or diag scalar `diff -u $u->{dir}/catalog.fresh.sql $u->{dir}/catalog.postgres.sql | head -200`;
my %dx = map {
	my ($rc, $out) = $u->run_client('psql', '-X', '-d', $un->connstr($_), '-c', '\\dx+ m365sync');
	$_ => $out } 'postgres', 'fresh';
like($dx{fresh}, qr/Objects in extension "m365sync"/, '\\dx+ m365sync lists the members');
is($dx{postgres}, $dx{fresh}, '\\dx+ m365sync is the same in both');
my $extconfig = "SELECT string_agg(c::regclass::text || coalesce(' WHERE ' || nullif(w, ''), ''), ', ' ORDER BY c::regclass::text)"
  . " FROM pg_extension e, unnest(e.extconfig, e.extcondition) x(c, w) WHERE e.extname = 'm365sync'";
is($un->safe_psql('postgres', $extconfig), $un->safe_psql('fresh', $extconfig),
	'pg_extension.extconfig and extcondition name the same tables, sequences and filters');

done_testing();
