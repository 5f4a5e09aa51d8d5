# Pull: no event row can outlive its calendar. The worker inserts a page's
# new events without a foreign key check per row (store_events_rows.c): it
# locks the calendar's key once for the page instead. A calendar deleted
# while a page is being written must still leave no orphan: the page waits
# for the deletion and then writes nothing. Where the events table has a
# trigger of its own, the page takes the statement path and the trigger
# fires for every row.
use strict;
use warnings;
use lib "$ENV{M365_SRC}/test/t/lib";
use M365Test;
use Test::More;

my $t = M365Test->new(name => 'pull_calendar_gone', conf => "m365sync.sync_interval = '1h'\n");
$t->setup_app;
my $ada = $t->add_sim_user('contoso.example', 'ada@contoso.example');
my $account = $t->connect_user('flow-ada', 'ada@contoso.example');
my $node = $t->node;

sub sync_now
{
	return $t->as_admin("SELECT status || ':' || fetched || ':' || applied FROM m365sync.sync($account)");
}
sub orphans
{
	return $node->safe_psql('postgres', "SELECT count(*) FROM m365sync.events e WHERE NOT EXISTS"
		  . " (SELECT 1 FROM m365sync.calendars c WHERE c.account_id = e.account_id AND c.calendar_id = e.calendar_id)");
}

# The first round (the worker's, at connect, or this one) finds the calendar empty.
my @t = gmtime(time + 86400);
my $day = sprintf('%04d-%02d-%02d', $t[5] + 1900, $t[4] + 1, $t[3]);
sync_now();
ok($node->poll_query_until('postgres', "SELECT count(*) = 1 FROM m365sync.calendars WHERE account_id = $account AND delta_is_final"),
	'the calendar is synced (empty)');

# 1. A page of new events against a calendar that exists: written.
$t->sim('POST', "/_sim/users/$ada->{id}/events/bulk", { count => 30, start => "${day}T08:00:00",
	interval_minutes => 30, duration_minutes => 15 });
like(sync_now(), qr/^ok:30:30$/, 'thirty new events are applied in one page');
is($node->safe_psql('postgres', "SELECT count(*) FROM m365sync.events WHERE account_id = $account"), '30',
	'and stored');

# 2. A trigger someone added on events still fires for every pulled row: the
# page then goes in as one INSERT ... SELECT instead of straight into the heap.
$node->safe_psql('postgres', q{
CREATE TABLE public.seen_inserts (event_id bigint);
CREATE FUNCTION public.note_insert() RETURNS trigger LANGUAGE plpgsql
  AS $$BEGIN INSERT INTO public.seen_inserts VALUES (NEW.event_id); RETURN NEW; END$$;
CREATE TRIGGER note_insert AFTER INSERT ON m365sync.events FOR EACH ROW EXECUTE FUNCTION public.note_insert();});
$t->sim('POST', "/_sim/users/$ada->{id}/events/bulk", { count => 10, start => "${day}T16:00:00",
	interval_minutes => 15, duration_minutes => 15 });
like(sync_now(), qr/^ok:10:10$/, 'ten more new events are applied');
is($node->safe_psql('postgres', "SELECT count(*) FROM public.seen_inserts s JOIN m365sync.events e USING (event_id)"
	  . " WHERE e.account_id = $account"), '10', 'the added trigger fired once for each of them');
$node->safe_psql('postgres', 'DROP TRIGGER note_insert ON m365sync.events');

# 3. The next page, while another session deletes the calendar.
$t->sim('POST', "/_sim/users/$ada->{id}/events/bulk", { count => 40, start => "${day}T20:00:00",
	interval_minutes => 30, duration_minutes => 15 });
my $a = $node->background_psql('postgres');
my $b = $node->background_psql('postgres', extra_params => [ '-U', 'dba' ]);
$a->query_safe("BEGIN; DELETE FROM m365sync.calendars WHERE account_id = $account;");
my $bpid = $b->query_safe('SELECT pg_backend_pid()');
$b->query_until(qr/sending/, "\\echo sending\nSELECT status FROM m365sync.sync($account);\n");
ok($node->poll_query_until('postgres',
	"SELECT wait_event_type = 'Lock' FROM pg_stat_activity WHERE pid = $bpid"),
	'the page waits for the calendar\'s deletion (its key lock)');
$a->query_safe('COMMIT');
# (the failed statement ends the background psql: it stops on an error)
ok($node->poll_query_until('postgres', "SELECT count(*) = 0 FROM pg_stat_activity WHERE pid = $bpid AND state <> 'idle'"),
	'the round ends once the deletion committed');
$a->quit;
eval { $b->quit };	# its psql already stopped on the error
is($node->safe_psql('postgres', "SELECT count(*) FROM m365sync.events WHERE account_id = $account"), '0',
	'the deletion took the stored events, and the page wrote none');
is(orphans(), '0', 'no event row without its calendar');
like(PostgreSQL::Test::Utils::slurp_file($node->logfile), qr/ERROR:  m365sync: calendar \d+ of account $account is gone/,
	'the page failed: its calendar is gone');

done_testing();
