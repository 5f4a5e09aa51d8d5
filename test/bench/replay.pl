# Driver of test/bench/replay (see there). Prints figures; asserts only the
# bound the issue sets: replays of one body cause at most a handful of rounds.
use strict;
use warnings;
use lib "$ENV{M365_SRC}/test/t/lib";
use M365Test;
use JSON::PP;
use Time::HiRes qw(time sleep);
use Test::More;

my $n = $ENV{REPLAYS} // 1000;
my $t = M365Test->new(name => 'bench_replay',
	conf => "m365sync.sync_interval = '1h'\nlog_min_messages = warning\n");
my $node = $t->node;
$t->setup_app;
my $rx = $t->start_receiver;
$node->safe_psql('postgres', "ALTER SYSTEM SET m365sync.notification_url = '$rx/notify';"
	  . " ALTER SYSTEM SET m365sync.lifecycle_url = '$rx/lifecycle'; SELECT pg_reload_conf();");
my $ada = $t->add_sim_user('contoso.example', 'ada@contoso.example');
my $account = $t->connect_user('flow-bench', 'ada@contoso.example');
my $json = JSON::PP->new->canonical;
sub db { return $node->safe_psql('postgres', $_[0]); }
sub runs { return db("SELECT count(*) FROM m365sync.sync_run_log WHERE account_id = $account"); }
sub quiet { return $node->poll_query_until('postgres', "SELECT NOT EXISTS (SELECT 1 FROM m365sync.account_wakeups)"
	  . " AND NOT EXISTS (SELECT 1 FROM m365sync.sync_run_log WHERE finished_at IS NULL)"); }
sub sim_seq { my $l = $t->sim_log; return @$l ? $l->[-1]{seq} : 0; }
sub graph_since { my ($seq, $re) = @_;
	return [ grep { $_->{path} =~ $re } @{ $t->sim('GET', "/_sim/log?since=$seq")->{value} } ]; }
sub delivered { my ($re) = @_;
	my ($d) = grep { $_->{url} =~ $re } reverse @{ $t->sim('GET', '/_sim/notifications')->{value} };
	return $json->encode($d->{body}); }
$node->safe_psql('postgres', q{
	CREATE PROCEDURE public.replay(body text, n int) LANGUAGE plpgsql AS $$
	DECLARE ok int := 0; t0 timestamptz := clock_timestamp();
	BEGIN
		FOR i IN 1 .. n LOOP
			IF m365sync.handle_notification(body) = 'accepted' THEN ok := ok + 1; END IF;
			COMMIT;
		END LOOP;
		RAISE NOTICE 'replayed accepted=% seconds=%', ok, extract(epoch FROM clock_timestamp() - t0);
	END $$;
	GRANT EXECUTE ON PROCEDURE public.replay(text, int) TO flowagent;
});
# -> (accepted, seconds, rounds, Graph requests, renewal PATCHes)
sub measure
{
	my ($body) = @_;
	quiet() or die 'worker not quiet';
	my ($runs0, $seq0) = (runs(), sim_seq());
	my (undef, $state, $msg, $err) = $t->sql("CALL public.replay(\$b\$$body\$b\$, $n)", role => 'flowagent');
	die "replay: $state $msg" if $state ne '';
	my ($ok, $secs) = $err =~ /replayed accepted=(\d+) seconds=([\d.]+)/;
	sleep 2;    # a mark held back by the gap falls due within 1 s
	quiet() or die 'worker not quiet';
	return ($ok, $secs, runs() - $runs0, scalar @{ graph_since($seq0, qr{^/v1\.0/}) },
		scalar grep { $_->{method} eq 'PATCH' } @{ graph_since($seq0, qr{^/v1\.0/subscriptions/}) });
}

$node->poll_query_until('postgres', "SELECT subscription = 'active' FROM m365sync.account_status WHERE account_id = $account")
  or die 'no subscription';
my @g = gmtime(time + 86400);
my $day = sprintf('%04d-%02d-%02d', $g[5] + 1900, $g[4] + 1, $g[3]);
$t->sim('POST', "/_sim/users/$ada->{id}/events", { subject => 'Replayed',
	start => { dateTime => "${day}T10:00:00", timeZone => 'UTC' }, end => { dateTime => "${day}T11:00:00", timeZone => 'UTC' } });
$node->poll_query_until('postgres', "SELECT count(*) > 0 FROM m365sync.events WHERE account_id = $account AND graph_id IS NOT NULL")
  or die 'the event did not arrive';
my $body = delivered(qr{/notify$});
my $altered = $json->decode($body);
$altered->{value}[0]{resourceData}{'@odata.etag'} = 'W/"DwAAABYAAAAnotpulled"';
$altered = $json->encode($altered);
my $sid = db("SELECT subscription_id FROM m365sync.subscriptions WHERE account_id = $account");
$t->sim('POST', "/_sim/subscriptions/$sid/lifecycle", { event => 'reauthorizationRequired' });
$node->poll_query_until('postgres', "SELECT renewed_at IS NOT NULL FROM m365sync.subscriptions WHERE account_id = $account")
  or die 'no renewal';
my $lifecycle = delivered(qr{/lifecycle$});

my @same = measure($body);
my @alt = measure($altered);
my @life = measure($lifecycle);
my $load = `cat /proc/loadavg 2>/dev/null` // ''; $load =~ s/^(\S+ \S+ \S+).*/$1/s;
diag("replay: $n replays per body as the app role, one session, each its own transaction; load average $load");
diag(sprintf("  %-44s %4d accepted in %6.2f s: %3d rounds, %3d Graph requests", 'the body as captured (a change already pulled)', @same[0 .. 3]));
diag(sprintf("  %-44s %4d accepted in %6.2f s: %3d rounds, %3d Graph requests", 'the body with another etag (not pulled)', @alt[0 .. 3]));
diag(sprintf("  %-44s %4d accepted in %6.2f s: %3d rounds, %3d Graph requests, %d renewal PATCHes",
	'reauthorizationRequired, as captured', @life));
diag("  before issue 23: one round per replay (50 replays in 7.5 s: 50 rounds, 51 Graph requests), one PATCH per reauthorizationRequired");
is($same[0], $n, 'every replay was accepted (a valid body)');
cmp_ok($same[2], '<=', 5, 'replays of one body cause at most a handful of rounds');
cmp_ok($alt[2], '<=', int($alt[1]) + 3, 'an altered body: at most one round per 1 s gap');
is($life[4], 0, 'a replayed reauthorizationRequired renews nothing');
done_testing();
