# Webhook replay (issue 23): a captured, valid notification body must not
# buy sync rounds or Graph requests. Before, 50 replays in 7.5 s caused 50
# rounds and 51 Graph requests, and each replayed reauthorizationRequired a
# renewal PATCH. Now: a change already pulled marks nothing; marks coalesce
# and wait for a 1 s gap after the account's last round; lifecycle renewals
# are rate-limited per subscription; a recreated subscription (removed at
# Microsoft, or a week old) has a new clientState, so old bodies get 42501.
# test/bench/replay measures 1,000 replays.
use strict;
use warnings;
use lib "$ENV{M365_SRC}/test/t/lib";
use M365Test;
use JSON::PP;
use Test::More;
use Time::HiRes qw(time sleep);

my $t = M365Test->new(name => 'replay', conf => "m365sync.sync_interval = '1h'\n");
my $node = $t->node;
$t->setup_app;
my $rx = $t->start_receiver;
$node->safe_psql('postgres', "ALTER SYSTEM SET m365sync.notification_url = '$rx/notify';"
	  . " ALTER SYSTEM SET m365sync.lifecycle_url = '$rx/lifecycle'; SELECT pg_reload_conf();");
my $ada = $t->add_sim_user('contoso.example', 'ada@contoso.example');
my $account = $t->connect_user('flow-ada', 'ada@contoso.example');
like($account, qr/^\d+$/, 'ada is connected');
my $json = JSON::PP->new->canonical;

sub db { return $node->safe_psql('postgres', $_[0]); }
sub wait_for { my ($sql, $secs) = @_; my $end = time + ($secs // 60);
	while (time < $end) { return 1 if db($sql) eq 't'; sleep 0.05; } return 0; }
sub runs { return db("SELECT count(*) FROM m365sync.sync_run_log WHERE account_id = $account"); }
sub quiet { return wait_for("SELECT NOT EXISTS (SELECT 1 FROM m365sync.account_wakeups)"
	  . " AND NOT EXISTS (SELECT 1 FROM m365sync.sync_run_log WHERE finished_at IS NULL)", 30); }
# The simulator's request log: its last sequence number, and Graph requests after one.
sub sim_seq { my $l = $t->sim_log; return @$l ? $l->[-1]{seq} : 0; }
sub graph_since { my ($seq, $re) = @_; $re //= qr{^/v1\.0/};
	return [ grep { $_->{path} =~ $re } @{ $t->sim('GET', "/_sim/log?since=$seq")->{value} } ]; }
sub delivered { my ($url_re) = @_;
	my ($d) = grep { $_->{url} =~ $url_re } reverse @{ $t->sim('GET', '/_sim/notifications')->{value} };
	return $json->encode($d->{body}); }
my @d = map { my @g = gmtime(time + 86400 * $_); sprintf('%04d-%02d-%02d', $g[5] + 1900, $g[4] + 1, $g[3]) } 1 .. 3;
my $n_event = 0;
sub outlook_create { my ($subject) = @_; $n_event++;
	return $t->sim('POST', "/_sim/users/$ada->{id}/events", { subject => $subject,
		start => { dateTime => sprintf("$d[0]T%02d:00:00", $n_event % 20), timeZone => 'UTC' },
		end => { dateTime => sprintf("$d[0]T%02d:30:00", $n_event % 20), timeZone => 'UTC' } }); }
sub seen { my ($subject) = @_;
	return "SELECT count(*) > 0 FROM m365sync.events e"
	  . " WHERE e.account_id = $account AND m365sync._decrypt_jsonb('events', 'content', e.account_id, e.event_id, e.content)->>'subject' = '$subject'"; }

# Replay a body n times as the app role, each call its own transaction (as
# separate requests would be), pausing between; returns (sqlstates, seconds).
$node->safe_psql('postgres', q{
	CREATE PROCEDURE public.replay(body text, n int, pause float8) LANGUAGE plpgsql AS $$
	DECLARE ok int := 0; t0 timestamptz := clock_timestamp();
	BEGIN
		FOR i IN 1 .. n LOOP
			IF m365sync.handle_notification(body) = 'accepted' THEN ok := ok + 1; END IF;
			COMMIT;
			PERFORM pg_sleep(pause);
		END LOOP;
		RAISE NOTICE 'replayed accepted=% seconds=%', ok, extract(epoch FROM clock_timestamp() - t0);
	END $$;
	GRANT EXECUTE ON PROCEDURE public.replay(text, int, float8) TO flowagent;
});
sub replay
{
	my ($body, $n, $pause) = @_;
	my (undef, $state, undef, $err) = $t->sql("CALL public.replay(\$b\$$body\$b\$, $n, " . ($pause // 0) . ")",
		role => 'flowagent');
	if ($state ne '')
	{
		# refused: the rest one by one, to count each answer
		my %st = ($state => 1);
		for (2 .. $n)
		{
			my (undef, $s2) = $t->sql("SELECT m365sync.handle_notification(\$b\$$body\$b\$)", role => 'flowagent');
			$st{ $s2 eq '' ? 'accepted' : $s2 }++;
		}
		return (\%st, 0);
	}
	my ($ok, $secs) = $err =~ /replayed accepted=(\d+) seconds=([\d.]+)/ or return ({ error => $err }, 0);
	return ({ accepted => $ok }, $secs);
}

ok(wait_for("SELECT subscription = 'active' FROM m365sync.account_status WHERE account_id = $account"),
	'the account has a subscription');
ok(wait_for("SELECT count(*) > 0 FROM m365sync.sync_run_log WHERE account_id = $account AND status = 'ok'"),
	'the first round ran');
outlook_create('Replayed');
ok(wait_for(seen('Replayed'), 30), 'a change notification brings the Outlook event');
my $body = delivered(qr{/notify$});
like($body, qr/"subscriptionId"/, 'the delivered body is captured');
ok(quiet(), 'the worker is quiet');

# ---- the reproduction: 50 replays of one body in 7.5 s ----------------------------
my ($runs0, $seq0) = (runs(), sim_seq());
my ($states, $secs) = replay($body, 50, 0.15);
is_deeply($states, { accepted => 50 }, sprintf('50 replays in %.1f s are all accepted (a valid body)', $secs));
sleep 1.5;
ok(quiet(), 'and the worker is quiet again');
my $rounds = runs() - $runs0;
my $requests = scalar @{ graph_since($seq0) };
note "50 replays of one body: $rounds rounds, $requests Graph requests (before issue 23: 50 rounds, 51 requests)";
cmp_ok($rounds, '<=', 1, "50 replays of a change already pulled cause at most one round ($rounds)");
cmp_ok($requests, '<=', 2, "and at most two Graph requests ($requests)");

# A body altered to announce a version we do not have (another etag) is
# indistinguishable from a new change: it marks the account due, but marks
# coalesce and wait for the gap, so rounds stay bounded by time, not by count.
my $altered = $json->decode($body);
$altered->{value}[0]{resourceData}{'@odata.etag'} = 'W/"DwAAABYAAAAnotpulled"';
$altered = $json->encode($altered);
($runs0, $seq0) = (runs(), sim_seq());
($states, $secs) = replay($altered, 200, 0);
is_deeply($states, { accepted => 200 }, sprintf('200 replays of an altered body in %.1f s are accepted', $secs));
sleep 1.5;
ok(quiet(), 'the worker is quiet again');
$rounds = runs() - $runs0;
$requests = scalar @{ graph_since($seq0) };
note sprintf('200 replays of an altered body in %.1f s: %d rounds, %d Graph requests', $secs, $rounds, $requests);
cmp_ok($rounds, '<=', int($secs) + 2, sprintf('rounds bounded by the 1 s gap: %d in %.1f s of replays', $rounds, $secs));
cmp_ok($rounds, '>=', 1, 'but a change announced is still pulled');
is(db("SELECT count(*) FROM (SELECT started_at - lag(started_at) OVER (ORDER BY run_id) AS gap"
	  . " FROM m365sync.sync_run_log WHERE account_id = $account AND started_at > now() - make_interval(secs => " . (int($secs) + 10) . ")) g"
	  . " WHERE gap < interval '0.9 s'"), '0', 'no two rounds began less than 0.9 s apart');

# ---- lifecycle: reauthorizationRequired, replayed ------------------------------------
my $sid = db("SELECT subscription_id FROM m365sync.subscriptions WHERE account_id = $account");
$seq0 = sim_seq();
$t->sim('POST', "/_sim/subscriptions/$sid/lifecycle", { event => 'reauthorizationRequired' });
ok(wait_for("SELECT renewed_at IS NOT NULL FROM m365sync.subscriptions WHERE account_id = $account", 30),
	'reauthorizationRequired: the subscription is renewed');
my $renewals = sub { scalar grep { $_->{method} eq 'PATCH' } @{ graph_since($_[0], qr{^/v1\.0/subscriptions/}) } };
is($renewals->($seq0), 1, 'with one PATCH');
my $lifecycle = delivered(qr{/lifecycle$});
like($lifecycle, qr/reauthorizationRequired/, 'the lifecycle body is captured');
$seq0 = sim_seq();
($states) = replay($lifecycle, 30, 0.05);
is_deeply($states, { accepted => 30 }, '30 replays of it are accepted');
sleep 3;
is($renewals->($seq0), 0, 'and cause no renewal: one per subscription per 10 minutes');

# ---- subscriptionRemoved: a new subscription, a new clientState --------------------
my $old_cs = (grep { $_->{id} eq $sid } @{ $t->sim('GET', '/_sim/subscriptions')->{value} })[0]{clientState};
$t->sim('POST', "/_sim/subscriptions/$sid/lifecycle", { event => 'subscriptionRemoved' });
ok(wait_for("SELECT subscription_id <> '$sid' FROM m365sync.subscriptions WHERE account_id = $account", 30),
	'subscriptionRemoved: a new subscription is made');
my $removed = delivered(qr{/lifecycle$});
like($removed, qr/subscriptionRemoved/, 'the removal body is captured');
my $sid2 = db("SELECT subscription_id FROM m365sync.subscriptions WHERE account_id = $account");
my ($sub2) = grep { $_->{id} eq $sid2 } @{ $t->sim('GET', '/_sim/subscriptions')->{value} };
isnt($sub2->{clientState}, $old_cs, 'with a new clientState');
($states) = replay($removed, 5, 0);
is_deeply($states, { '42501' => 5 }, 'replays of the removal are refused (42501): it is acted on once');
($states) = replay($body, 5, 0);
is_deeply($states, { '42501' => 5 }, 'and so are the old change bodies');

# ---- a week-old subscription is remade: its clientState is rotated ------------------
outlook_create('Before rotation');
ok(wait_for(seen('Before rotation'), 30), 'notifications flow on the new subscription');
my $week_body = delivered(qr{/notify$});
db("UPDATE m365sync.subscriptions SET created_at = now() - interval '7 days 1 minute' WHERE account_id = $account");
ok(wait_for("SELECT subscription_id <> '$sid2' FROM m365sync.subscriptions WHERE account_id = $account", 30),
	'a subscription a week old is remade');
my $sid3 = db("SELECT subscription_id FROM m365sync.subscriptions WHERE account_id = $account");
my @at_ms = grep { $_->{mailbox} eq $ada->{id} } @{ $t->sim('GET', '/_sim/subscriptions')->{value} };
is(join(',', map { $_->{id} } @at_ms), $sid3, 'Microsoft holds only the new one');
isnt($at_ms[0]{clientState}, $sub2->{clientState}, 'with a new clientState');
($states) = replay($week_body, 3, 0);
is_deeply($states, { '42501' => 3 }, 'a body captured before the rotation is refused (42501)');
outlook_create('After rotation');
ok(wait_for(seen('After rotation'), 30), 'and notifications flow again');

done_testing();
