# What the chaos run (070) found, each as a fixed sequence driven by
# m365sync.sync() (no worker, so nothing races the steps):
#   - a success whose body came back garbled is not a failed push: the
#     event is read again and linked, exactly once;
#   - a full resync (lost delta token) keeps what it did not insert itself:
#     a create whose answer was lost and is linked by the pull, and an event
#     whose conflict the pull settled; and it removes a listed conflict's
#     event deleted in Outlook (as a tombstone, the listing stays).
use strict;
use warnings;
use lib "$ENV{M365_SRC}/test/t/lib";
use M365Test;
use JSON::PP;
use Test::More;
use Time::HiRes qw(usleep);

my $json = JSON::PP->new->canonical;
my $t = M365Test->new(name => 'findings', conf => "shared_preload_libraries = ''\n");
$t->setup_app;
my $ada = $t->add_sim_user('contoso.example', 'ada@contoso.example');
my $account = $t->connect_user('flow-ada', 'ada@contoso.example');

my @d = gmtime(time + 2 * 86400);
my $day = sprintf('%04d-%02d-%02d', $d[5] + 1900, $d[4] + 1, $d[3]);
my $hour = 7;
sub lit { my ($s) = @_; $s =~ s/'/''/g; return "'$s'"; }
sub as_ada { return $t->as_user('flow-ada', $_[0]); }
sub create
{
	my ($subject) = @_;
	$hour++;
	return as_ada('SELECT m365sync.upsert_event(' . lit($json->encode({ subject => $subject,
		start => { dateTime => sprintf('%sT%02d:00:00', $day, $hour), timeZone => 'UTC' },
		end => { dateTime => sprintf('%sT%02d:30:00', $day, $hour), timeZone => 'UTC' } })) . '::jsonb)');
}
sub update { my ($id, $subject) = @_; as_ada("SELECT m365sync.upsert_event('{\"subject\": \"$subject\"}'::jsonb, $id)"); }
sub sync_round { return $t->as_admin("SELECT status || '/' || coalesce(error, '') FROM m365sync.sync($account)"); }
sub remote
{
	my ($subject) = @_;
	return scalar grep { $_->{subject} eq $subject } @{ $t->sim('GET', "/_sim/users/$ada->{id}/truth")->{events} };
}
sub local_row
{
	my ($id) = @_;
	my ($out, $st) = $t->sql("SELECT subject || '|' || sync_state || '|' || (graph_id IS NOT NULL) FROM m365sync.event($id)",
		role => 'flowagent', user => 'flow-ada');
	return $st eq '' ? $out : "($st)";
}
sub outbox { my ($id) = @_; return $t->node->safe_psql('postgres',
	"SELECT string_agg(op || ':' || state, ',' ORDER BY outbox_id) FROM m365sync.outbox WHERE event_id = $id"); }
sub listed { my ($id) = @_; return as_ada("SELECT count(*) FROM m365sync.conflicts() WHERE event_id = $id"); }
sub gid { return as_ada("SELECT graph_id FROM m365sync.event($_[0])"); }
sub outlook { my ($m, $gid, $b) = @_; return $t->sim($m, "/_sim/users/$ada->{id}/events/$gid", $b); }

is(sync_round(), 'ok/', 'first sync');

# 1. garbled answer to a create
my $e1 = create('Garbled create');
$t->sim('POST', '/_sim/faults', { route => '/events$', method => 'POST', kind => 'malformed', count => 1 });
sync_round();
is(outbox($e1), 'create:done', 'a create answered with a garbled body is done, not failed');
is(local_row($e1), 'Garbled create|synced|true', '... linked to the event Graph made');
is(remote('Garbled create'), 1, '... which is in Outlook once');

# 2. garbled answer to an update
update($e1, 'Garbled update');
$t->sim('POST', '/_sim/faults', { route => '/events/', method => 'PATCH', kind => 'malformed', count => 1 });
sync_round();
is(outbox($e1), 'create:done,update:done', 'an update answered with a garbled body is done, not failed');
is(local_row($e1) . '/' . listed($e1), 'Garbled update|synced|true/0', '... synced, and no conflict made of it');
is(remote('Garbled update'), 1, '... and Outlook has it');

# 3. a create whose answer was lost, linked by a full resync
my $e3 = create('Answer lost');
$t->sim('POST', '/_sim/faults', { route => '/events$', method => 'POST', kind => 'truncated', count => 1 });
sync_round();
is(remote('Answer lost'), 1, 'the create reached Outlook, its answer did not');
is(outbox($e3) . '/' . $t->node->safe_psql('postgres', "SELECT coalesce(seen_round::text, 'none') FROM m365sync.events WHERE event_id = $e3"), 'create:pending/none', '... so its push waits (never seen by a full round)');
$t->sim('POST', '/_sim/delta/expire', { upn => 'ada@contoso.example' });
sync_round();
is(local_row($e3), 'Answer lost|synced|true', 'a full resync links the create and keeps it');
is(outbox($e3), 'create:done', '... its outbox entry is done');
is(as_ada("SELECT count(*) FROM m365sync.events(now(), now() + interval '7 days') WHERE subject = 'Answer lost'"),
	1, '... once in FlowAgent');

# 4. a conflict the pull settles (Outlook later: it wins) during a full resync
my $e4 = create('Both edit');
sync_round();
update($e4, 'Both edit local');
usleep(20_000);
outlook('PATCH', gid($e4), { subject => 'Both edit remote' });
$t->sim('POST', '/_sim/delta/expire', { upn => 'ada@contoso.example' });
sync_round();
is(local_row($e4) . '/' . listed($e4), 'Both edit remote|conflict|true/1',
	'a conflict met by a full resync: the kept version stays, the other is listed');

# 5. a listed conflict's event deleted in Outlook, seen by a full resync
my $e5 = create('Listed then deleted');
sync_round();
outlook('PATCH', gid($e5), { subject => 'Listed remote' });
usleep(20_000);
update($e5, 'Listed local');
sync_round();
is(local_row($e5) . '/' . listed($e5), 'Listed local|conflict|true/1', 'local edit kept, the remote one listed');
is(remote('Listed local'), 1, '... and pushed');
outlook('DELETE', gid($e5));
$t->sim('POST', '/_sim/delta/expire', { upn => 'ada@contoso.example' });
sync_round();
is(local_row($e5), '(P0002)', 'deleted in Outlook, seen by a full resync: gone in FlowAgent too');
is(listed($e5), 1, '... while its conflict stays listed');

is($t->node->safe_psql('postgres', "SELECT count(*) FROM m365sync.outbox WHERE state <> 'done'"), '0',
	'nothing failed or left pending');
done_testing();
