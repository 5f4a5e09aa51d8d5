# No poison events (issue 23): an item the pull cannot map (an unknown zone,
# an impossible date, a type it does not know) is skipped with a WARNING
# that names the field's path and the event's id only, and counted in
# sync_runs.skipped; the rest of the page and the account go on, the cursor
# advances, and the item comes again when it next changes. A custom zone
# (GRAPH.md §10) is no poison: the UTC-rendered copy is read as UTC. The
# simulator's `_sim_raw` (test/graphsim/README.md) plays the odd items.
use strict;
use warnings;
use lib "$ENV{M365_SRC}/test/t/lib";
use M365Test;
use PostgreSQL::Test::Utils;
use Test::More;

my $t = M365Test->new(name => 'poison', conf => "m365sync.sync_interval = '1h'\n");
my $node = $t->node;
$t->setup_app;
my $ada = $t->add_sim_user('contoso.example', 'ada@contoso.example');
my $account = $t->connect_user('flow-ada', 'ada@contoso.example');
like($account, qr/^\d+$/, 'ada is connected');

my @d = map { my @t = gmtime(time + 86400 * $_); sprintf('%04d-%02d-%02d', $t[5] + 1900, $t[4] + 1, $t[3]) } 1 .. 4;
sub outlook { my ($m, $p, $b) = @_; return $t->sim($m, "/_sim/users/$ada->{id}$p", $b); }
sub event
{
	my ($subject, $day, $hour, %raw) = @_;
	return outlook('POST', '/events', { subject => $subject,
		start => { dateTime => "${day}T$hour:00:00", timeZone => 'UTC' },
		end => { dateTime => "${day}T$hour:30:00", timeZone => 'UTC' },
		%raw ? (_sim_raw => \%raw) : () });
}

# The worker's first round of the new account may still run: wait for it.
ok($node->poll_query_until('postgres',
	"SELECT count(*) > 0 AND bool_and(status <> 'running') FROM m365sync.sync_run_log WHERE account_id = $account"),
	'the first round of the new account is over');

# One page: two good events, three poison items, one custom zone.
my $zone_canary = 'Mars Standard Time';
event('Good one', $d[0], '08');
my $bad_zone = event('Bad zone', $d[0], '09',
	start => { dateTime => "$d[0]T09:00:00.0000000", timeZone => $zone_canary });
my $bad_date = event('Bad date', $d[0], '10',
	start => { dateTime => '2026-02-30T10:00:00.0000000', timeZone => 'UTC' });
my $bad_type = event('Bad type', $d[0], '11', type => 'holographicMeeting');
event('Custom zone', $d[1], '12',
	start => { dateTime => "$d[1]T12:00:00.0000000", timeZone => 'tzone://Microsoft/Custom' },
	end => { dateTime => "$d[1]T12:45:00.0000000", timeZone => 'Customized Time Zone' });
event('Good two', $d[2], '13');

my $offset = -s $node->logfile;
my ($out, $state, $msg, $stderr) = $t->sql(
	"SELECT status || ':' || fetched || ':' || applied FROM m365sync.sync($account)", role => 'dba');
is($state, '', 'the round raises no error');
like($out, qr/^ok:6:3$/, 'the round is ok: 6 fetched, 3 applied (two good, one custom zone)');

sub events
{
	return $t->as_user('flow-ada', "SELECT string_agg(subject || '\@' ||"
		  . " to_char(start_at AT TIME ZONE 'UTC', 'YYYY-MM-DD HH24:MI') || '-' || to_char(end_at AT TIME ZONE 'UTC', 'HH24:MI'),"
		  . " ',' ORDER BY start_at, subject)"
		  . " FROM m365sync.events(now() - interval '1 day', now() + interval '10 days')");
}
is(events(), "Good one\@$d[0] 08:00-08:30,Custom zone\@$d[1] 12:00-12:45,Good two\@$d[2] 13:00-13:30",
	'the good events and the custom zone (read as UTC) are stored, the three poison items are not');
is($t->as_admin("SELECT skipped || ':' || status FROM m365sync.sync_runs WHERE account_id = $account"
	  . " ORDER BY started_at DESC LIMIT 1"), '3:ok', 'sync_runs counts the three skipped items');

# The WARNINGs: one per item, the field's path and the event's id, never the value.
my @warn = $stderr =~ /WARNING:.*skipped an event Graph sent for account $account\n.*\n?DETAIL:\s+([^\n]*)/g;
is(scalar @warn, 3, 'three WARNINGs reach the caller');
my %want = ('start.timeZone' => $bad_zone, 'start.dateTime' => $bad_date, 'type' => $bad_type);
for my $field (sort keys %want)
{
	my $id = $want{$field}->{immutable_id};
	ok((grep { /^Field \Q$field\E of event \Q$id\E could not be mapped/ } @warn),
		"the WARNING names field $field and the event's id");
}
my $log = slurp_file($node->logfile, $offset);
unlike($stderr . $log, qr/\Q$zone_canary\E|2026-02-30|holographicMeeting|Bad zone|Bad date|Bad type/,
	'neither the log nor the client sees a zone name, a date, a type or a subject');

# The cursor advanced: the next round fetches nothing.
like($t->as_admin("SELECT status || ':' || fetched FROM m365sync.sync($account)"), qr/^ok:0$/,
	'the cursor moved past the page: the next round fetches nothing');

# Each skipped item is retried when it next changes.
outlook('PATCH', "/events/$_->{id}", { _sim_raw => undef }) for $bad_zone, $bad_date, $bad_type;
is($t->as_admin("SELECT status || ':' || fetched || ':' || applied FROM m365sync.sync($account)"), 'ok:3:3',
	'once changed in Outlook, the three come again and are applied');
like(events(), qr/Bad zone\@$d[0] 09:00.*Bad date\@$d[0] 10:00.*Bad type\@$d[0] 11:00/,
	'the three are stored now');
is($t->as_admin("SELECT skipped FROM m365sync.sync_runs WHERE account_id = $account ORDER BY started_at DESC LIMIT 1"),
	'0', 'and that round skipped nothing');

# A stored event that turns poison keeps its stored copy, even through a
# full round's sweep (a lost cursor), until a readable version comes.
outlook('PATCH', "/events/$bad_type->{id}", { subject => 'Bad type, again', _sim_raw => { type => 'holographicMeeting' } });
$t->sim('POST', '/_sim/delta/expire', { upn => 'ada@contoso.example' });
is($t->as_admin("SELECT status || ':' || fetched || ':' || applied || ':' || deleted FROM m365sync.sync($account)"),
	'ok:6:0:0', 'a full round over a poison item: nothing applied, nothing swept');
like(events(), qr/,Bad type\@$d[0] 11:00/, 'the stored copy stays as it was');
is($t->as_admin("SELECT skipped FROM m365sync.sync_runs WHERE account_id = $account ORDER BY started_at DESC LIMIT 1"),
	'1', 'one item skipped');

# The worker's rounds (a transaction per page) do the same.
my $bad_worker = event('Bad in the worker', $d[3], '14', start => { dateTime => 'soon', timeZone => 'UTC' });
event('Good in the worker', $d[3], '15');
$node->safe_psql('postgres', "UPDATE m365sync.accounts SET next_sync_at = now() WHERE account_id = $account");
ok($node->poll_query_until('postgres',
	"SELECT count(*) > 0 FROM m365sync.sync_run_log WHERE account_id = $account AND status = 'ok' AND skipped = 1"
	  . " AND fetched = 2 AND applied = 1", 't'),
	'a worker round skips the poison item and applies the other');
like(events(), qr/Good in the worker\@$d[3] 15:00/, 'the good event of that page is stored');
is($t->as_admin("SELECT last_error IS NULL AND status = 'connected' FROM m365sync.account_status WHERE account_id = $account"),
	't', 'the account stays connected, with no error');

# The custom zone's event is an event like any other: FlowAgent may change it
# (its stored times are the UTC-rendered copy's), and the change is pushed.
my $custom_id = $t->as_user('flow-ada', "SELECT event_id FROM m365sync.events(now() - interval '1 day',"
	  . " now() + interval '10 days') WHERE subject = 'Custom zone'");
my @up = $t->sql(qq{SELECT m365sync.upsert_event('{"subject": "Custom zone, renamed"}'::jsonb, $custom_id)},
	role => 'flowagent', user => 'flow-ada');
is($up[1], '', 'FlowAgent renames the custom-zone event (its times are not refused)');
$t->sql("SELECT m365sync.sync($account)", role => 'dba');    # or the worker, woken by the write
ok($node->poll_query_until('postgres', "SELECT count(*) = 0 FROM m365sync.outbox WHERE account_id = $account"
	  . " AND state <> 'done'"), 'the rename is pushed (the answer, a custom zone in UTC, is read)');
ok((grep { ($_->{subject} // '') eq 'Custom zone, renamed' } @{ $t->sim('GET', "/_sim/users/$ada->{id}/truth")->{events} }),
	'and Outlook has it');
my @bad = $t->sql(q{SELECT m365sync.upsert_event('{"subject": "x", "start": {"dateTime": "2030-01-01T10:00:00", "timeZone": "tzone://Microsoft/Custom"}, "end": {"dateTime": "2030-01-01T11:00:00", "timeZone": "UTC"}}'::jsonb)},
	role => 'flowagent', user => 'flow-ada');
is($bad[1], '22023', 'but a custom zone FlowAgent sends itself is refused (22023), as before');

done_testing();
