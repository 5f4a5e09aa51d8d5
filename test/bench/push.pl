# Driver of test/bench/push (see there). Prints figures, asserts nothing
# but that every change arrived.
use strict;
use warnings;
use lib "$ENV{M365_SRC}/test/t/lib";
use M365Test;
use JSON::PP;
use Time::HiRes qw(time);
use Test::More;

my $latency = $ENV{LATENCY_MS} // 50;
my $mailboxes = $ENV{MAILBOXES} // 10;
# per mailbox, half creates, 30 % updates, 20 % deletes (50/30/20 of 100)
my $per = $ENV{CHANGES_PER_MAILBOX} // 100;
my ($creates, $updates) = (int($per * 0.5), int($per * 0.3));
my $deletes = $per - $creates - $updates;
my $json = JSON::PP->new->canonical;
my $t = M365Test->new(name => 'bench_push', sim_args => [ '--latency-ms', $latency ],
	conf => "m365sync.sync_interval = '1h'\nlog_min_messages = warning\n");
$t->setup_app;
$t->sim('POST', '/_sim/config', { log => JSON::PP::false });
my @acc;
for my $i (1 .. $mailboxes)
{
	$t->add_sim_user('contoso.example', "user$i\@contoso.example");
	push @acc, [ "flow-$i", $t->connect_user("flow-$i", "user$i\@contoso.example") ];
}
my $ids = join ',', map { $_->[1] } @acc;
# The worker stays out of the way: the bench drives sync() itself. A round
# still running when the backoff is set would lift it as it finishes (and the
# worker, woken at the changes' commit, would then push them itself), so
# park waits until every account has had its round and none runs.
sub park
{
	$t->node->poll_query_until('postgres',
		"SELECT count(*) FILTER (WHERE a.last_sync_at IS NULL) + (SELECT count(*) FROM m365sync.sync_run_log"
		  . " WHERE status = 'running') FROM m365sync.accounts a WHERE a.account_id IN ($ids)", '0')
	  or die "accounts still syncing";
	$t->node->safe_psql('postgres', "UPDATE m365sync.accounts SET backoff_until = now() + interval '1 hour' WHERE account_id IN ($ids)");
}
my @t0 = gmtime(time + 86400);
my $day = sprintf('%04d-%02d-%02d', $t0[5] + 1900, $t0[4] + 1, $t0[3]);
my $n = 0;
sub ev { $n++; my $m = $n % 1440; return $json->encode({ subject => "Bench $n", body => { contentType => 'text', content => 'x' x 200 },
	start => { dateTime => sprintf('%sT%02d:%02d:00', $day, int($m / 60), $m % 60), timeZone => 'UTC' },
	end => { dateTime => sprintf('%sT%02d:%02d:30', $day, int($m / 60), $m % 60), timeZone => 'UTC' } }); }
sub drain_all
{
	my ($batch) = @_;
	my $sql = "SET m365sync.push_batch_size = $batch;\n"
	  . join('', map { "SELECT pushed FROM m365sync.sync($_->[1]);\n" } @acc);
	my $s = $t->sim('GET', '/_sim/stats');
	my $t1 = time;
	my $out = $t->node->safe_psql('postgres', $sql);
	my $secs = time - $t1;
	my $s2 = $t->sim('GET', '/_sim/stats');
	my $pushed = 0;
	$pushed += $_ for split /\n/, $out;
	return ($secs, $s2->{graph} - $s->{graph}, $pushed);
}
# Existing events to update and delete, then the timed changes.
sub prepare
{
	park();
	my %ex;
	for my $a (@acc)
	{
		my $sql = join '', map { "SELECT m365sync.upsert_event('" . ev() . "'::jsonb);\n" } 1 .. ($updates + $deletes);
		$ex{ $a->[0] } = [ split /\n/, $t->as_user($a->[0], $sql) ];
	}
	drain_all(20);
	park();					# a finished round lifts the backoff
	for my $a (@acc)
	{
		my @e = @{ $ex{ $a->[0] } };
		my $sql = join('', map { "SELECT m365sync.upsert_event('" . ev() . "'::jsonb);\n" } 1 .. $creates)
		  . join('', map { "SELECT m365sync.upsert_event('{\"subject\": \"Updated $_\"}'::jsonb, $_);\n" } @e[0 .. $updates - 1])
		  . join('', map { "SELECT m365sync.delete_event($_);\n" } @e[$updates .. $updates + $deletes - 1]);
		$t->as_user($a->[0], $sql);
	}
}
my $changes = $mailboxes * ($creates + $updates + $deletes);
my %r;
for my $mode ([ 'batched', 20 ], [ 'one request per change', 1 ])
{
	prepare();
	my ($secs, $reqs, $pushed) = drain_all($mode->[1]);
	is($pushed, $changes, "$mode->[0]: all $changes changes pushed")
	  or diag($t->node->safe_psql('postgres', "SELECT op, state, count(*), min(last_error) FROM m365sync.outbox GROUP BY 1, 2")
		  . "\n" . $t->node->safe_psql('postgres', "SELECT status, error_code, count(*) FROM m365sync.sync_runs GROUP BY 1, 2"));
	$r{ $mode->[0] } = [ $secs, $reqs ];
}
my ($bs, $br) = @{ $r{batched} };
my ($os, $or) = @{ $r{'one request per change'} };
diag(sprintf("push of %d changes across %d mailboxes, %d ms latency per request:", $changes, $mailboxes, $latency));
diag(sprintf("  batched:                %5d Graph requests = %.3f per change, %6.2f s to drain (%.0f changes/s)",
	$br, $br / $changes, $bs, $changes / $bs));
diag(sprintf("  one request per change: %5d Graph requests = %.3f per change, %6.2f s to drain (%.0f changes/s)",
	$or, $or / $changes, $os, $changes / $os));
diag(sprintf("  ratio: %.1fx fewer requests, %.1fx faster (requests include one delta call per mailbox)", $or / $br, $os / $bs));
diag("reproduce: test/bench/push   (LATENCY_MS=$latency)");
done_testing();
