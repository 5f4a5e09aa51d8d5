# The event API under concurrency (issue 4): two sessions writing one event.
# The second writer waits on the first's row lock, then applies its change
# on top of the committed version: nothing is lost, the event keeps its
# Graph id, and the push queue holds one entry with both changes. A delete
# racing an update waits the same way. A commit queues work exactly once; a
# rollback queues nothing.
use strict;
use warnings;
use lib "$ENV{M365_SRC}/test/t/lib";
use M365Test;
use PostgreSQL::Test::Utils;
use Test::More;

# No simulator: nothing is pushed, so the queue stays as the writers left it.
my $t = M365Test->new(name => 'api_concurrency', sim => 0);
my $node = $t->node;

# FlowAgent's role (flowagent, in m365sync_app) writes; alice has an
# account and a default calendar.
$node->safe_psql('postgres', q{
INSERT INTO m365sync.accounts (account_id, flowagent_user, mode, status)
VALUES (1, 'alice', 'delegated', 'connected');
INSERT INTO m365sync.calendars (account_id, calendar_id, graph_id, is_default)
VALUES (1, 10, 'AQMk-cal', true);
});

# The acting user counts only in the transaction that sets it.
my $as_alice = "SET LOCAL m365sync.flowagent_user = 'alice';";
my $id = $node->safe_psql('postgres', qq{BEGIN; $as_alice
SELECT m365sync.upsert_event('{"subject": "Original", "location": {"displayName": "Room 1"},
  "start": {"dateTime": "2026-05-04T09:00:00", "timeZone": "W. Europe Standard Time"},
  "end": {"dateTime": "2026-05-04T10:00:00", "timeZone": "W. Europe Standard Time"}}');
COMMIT;},
	extra_params => [ '-U', 'flowagent' ]);

# Make it a synced event, as the pull would leave it.
sub reset_synced
{
	$node->safe_psql('postgres', qq{
UPDATE m365sync.events SET graph_id = 'AAMk-1', change_key = 'CK1', sync_state = 'synced',
       deleted = false WHERE event_id = $id;
DELETE FROM m365sync.outbox;});
}
reset_synced();

sub event_field
{
	my ($path) = @_;
	return $node->safe_psql('postgres', qq{BEGIN; $as_alice SELECT data #>> '$path' FROM m365sync.event($id); COMMIT;},
		extra_params => [ '-U', 'flowagent' ]);
}

sub outbox
{
	return $node->safe_psql('postgres', q{
SELECT string_agg(op || coalesce(' ' || changed_fields::text, '') || ' if-match ' || coalesce(base_change_key, '-'), '; ')
  FROM m365sync.outbox WHERE state = 'pending'});
}

# Session A takes the event's lock; session B's write must wait for it.
sub race
{
	my ($first, $second) = @_;
	my $a = $node->background_psql('postgres', extra_params => [ '-U', 'flowagent' ]);
	my $b = $node->background_psql('postgres', extra_params => [ '-U', 'flowagent' ]);
	$a->query_safe("BEGIN; SET LOCAL m365sync.flowagent_user = 'alice'; $first");
	$b->query_safe("BEGIN; SET LOCAL m365sync.flowagent_user = 'alice';");
	my $bpid = $b->query_safe('SELECT pg_backend_pid()');
	$b->query_until(qr/sending/, "\\echo sending\n$second\n");
	my $waited = $node->poll_query_until('postgres',
		"SELECT wait_event_type = 'Lock' FROM pg_stat_activity WHERE pid = $bpid");
	$a->query_safe('COMMIT');
	$b->query_safe('COMMIT');
	$a->quit;
	$b->quit;
	return $waited;
}

# 1. Two updates of different fields: both survive.
ok(race(qq{SELECT m365sync.upsert_event('{"subject": "From A"}', $id);},
		qq{SELECT m365sync.upsert_event('{"location": {"displayName": "Room B"}}', $id);}),
	'second updater waits on the first one\'s row lock');
is(event_field('{subject}'), 'From A', 'first update kept');
is(event_field('{location,displayName}'), 'Room B', 'second update applied on top: no lost update');
is(outbox(), 'update {location,subject} if-match CK1',
	'one queued update carrying both changes, If-Match the synced changeKey');
is($node->safe_psql('postgres', "SELECT graph_id || ' ' || change_key FROM m365sync.events WHERE event_id = $id"),
	'AAMk-1 CK1', 'graph_id and changeKey kept for the push');

# 2. Two updates of the same field: the later commit wins, in order.
reset_synced();
ok(race(qq{SELECT m365sync.upsert_event('{"subject": "A again"}', $id);},
		qq{SELECT m365sync.upsert_event('{"subject": "B again", "importance": "high"}', $id);}),
	'same-field writers serialise');
is(event_field('{subject}'), 'B again', 'the later writer\'s subject');
is(outbox(), 'update {importance,subject} if-match CK1', 'still one queued update');

# 3. Update racing a delete: the delete waits, then wins; one queued delete.
reset_synced();
ok(race(qq{SELECT m365sync.upsert_event('{"subject": "about to go"}', $id);},
		qq{SELECT m365sync.delete_event($id);}),
	'delete waits for the update');
is($node->safe_psql('postgres', "SELECT deleted FROM m365sync.events WHERE event_id = $id"),
	't', 'event marked deleted');
is(outbox(), 'delete if-match CK1', 'the queued update became the delete');

# 4. Delete first, then an update: the update finds no event (P0002).
reset_synced();
{
	my $a = $node->background_psql('postgres', extra_params => [ '-U', 'flowagent' ]);
	$a->query_safe("BEGIN; SET LOCAL m365sync.flowagent_user = 'alice'; SELECT m365sync.delete_event($id);");
	my ($ret, $stdout, $stderr);
	my $h = IPC::Run::start(
		[ 'psql', '-X', '-U', 'flowagent', '-d', $node->connstr('postgres'), '-c',
		  "BEGIN; SET LOCAL m365sync.flowagent_user = 'alice'; SELECT m365sync.upsert_event('{\"subject\": \"late\"}', $id); COMMIT;" ],
		'>', \$stdout, '2>', \$stderr);
	$node->poll_query_until('postgres',
		"SELECT count(*) = 1 FROM pg_stat_activity WHERE wait_event_type = 'Lock' AND usename = 'flowagent'");
	$a->query_safe('COMMIT');
	$h->finish;
	like($stderr, qr/event $id does not exist/, 'update after a committed delete: P0002, not a resurrection');
	$a->quit;
}

# 5. BEGIN; upsert; ROLLBACK leaves nothing; a commit queues exactly one entry.
$node->safe_psql('postgres', 'DELETE FROM m365sync.outbox; DELETE FROM m365sync.events');
$node->safe_psql('postgres', qq{BEGIN; $as_alice
SELECT m365sync.upsert_event('{"subject": "rolled back", "start": {"dateTime": "2026-05-05T09:00:00", "timeZone": "UTC"},
  "end": {"dateTime": "2026-05-05T10:00:00", "timeZone": "UTC"}}');
ROLLBACK;}, extra_params => [ '-U', 'flowagent' ]);
is($node->safe_psql('postgres', 'SELECT count(*) FROM m365sync.events') . '/' .
   $node->safe_psql('postgres', 'SELECT count(*) FROM m365sync.outbox'), '0/0', 'rollback: no row, no outbox entry');
$node->safe_psql('postgres', qq{BEGIN; $as_alice
SELECT m365sync.upsert_event('{"subject": "kept", "start": {"dateTime": "2026-05-05T09:00:00", "timeZone": "UTC"},
  "end": {"dateTime": "2026-05-05T10:00:00", "timeZone": "UTC"}}');
COMMIT;}, extra_params => [ '-U', 'flowagent' ]);
is($node->safe_psql('postgres', "SELECT string_agg(op, ',') FROM m365sync.outbox WHERE state = 'pending'"),
	'create', 'commit: exactly one create queued');

$node->stop;
done_testing();
