# Change notifications: Graph's webhooks make Outlook changes visible in
# FlowAgent within seconds while polling stays at sync_interval (1h here).
# The simulator sends its notifications to a small HTTPS receiver that
# forwards each request to m365sync.handle_notification, as FlowAgent's web
# server does.
use strict;
use warnings;
use lib "$ENV{M365_SRC}/test/t/lib";
use M365Test;
use JSON::PP;
use Test::More;
use Time::HiRes qw(time sleep);

my $t = M365Test->new(name => 'notify', conf => "m365sync.sync_interval = '1h'\n");
my $node = $t->node;
$t->setup_app;
my $rx = $t->start_receiver;
$node->safe_psql('postgres', "ALTER SYSTEM SET m365sync.notification_url = '$rx/notify';"
	  . " ALTER SYSTEM SET m365sync.lifecycle_url = '$rx/lifecycle'; SELECT pg_reload_conf();");

my (undef, $bad_url) = $t->sql("ALTER SYSTEM SET m365sync.notification_url = 'http://flowagent.example/hook'");
is($bad_url, '22023', 'a notification_url that is not https is refused');

my $ada = $t->add_sim_user('contoso.example', 'ada@contoso.example');
my $account = $t->connect_user('flow-ada', 'ada@contoso.example');
like($account, qr/^\d+$/, 'ada is connected');

sub db { return $node->safe_psql('postgres', $_[0]); }
sub wait_for { my ($sql, $secs) = @_; my $end = time + ($secs // 60);
	while (time < $end) { return 1 if db($sql) eq 't'; sleep 0.05; } return 0; }
sub sim_subs { return [ grep { $_->{mailbox} eq $_[0]->{id} } @{ $t->sim('GET', '/_sim/subscriptions')->{value} } ]; }
my @d = map { my @g = gmtime(time + 86400 * $_); sprintf('%04d-%02d-%02d', $g[5] + 1900, $g[4] + 1, $g[3]) } 1 .. 3;
my $n_event = 0;
sub outlook_create { my ($who, $subject) = @_; $n_event++;
	return $t->sim('POST', "/_sim/users/$who->{id}/events", { subject => $subject,
		start => { dateTime => sprintf("$d[0]T%02d:00:00", $n_event % 20), timeZone => 'UTC' },
		end => { dateTime => sprintf("$d[0]T%02d:30:00", $n_event % 20), timeZone => 'UTC' } }); }
sub seen { my ($user, $subject) = @_;
	return "SELECT count(*) > 0 FROM m365sync.events e JOIN m365sync.accounts a USING (account_id)"
	  . " WHERE a.flowagent_user = '$user' AND m365sync._decrypt_jsonb('events', 'content', e.account_id, e.event_id, e.content)->>'subject' = '$subject'"; }
sub visible_within { my ($user, $subject, $secs) = @_; my $t0 = time;
	my $ok = wait_for(seen($user, $subject), 30); return $ok ? time - $t0 : 999; }

# --- the subscription -------------------------------------------------------
ok(wait_for("SELECT subscription = 'active' FROM m365sync.account_status WHERE account_id = $account"),
	'the worker makes a subscription for the new account');
my $subs = sim_subs($ada);
is(scalar @$subs, 1, 'one subscription at Microsoft');
my $sub = $subs->[0];
is($sub->{resource}, "users/$ada->{id}/calendars/$ada->{calendars}[0]{id}/events",
	'on the synced (default) calendar: users/{id}/calendars/{cid}/events');
is(db("SELECT count(*) FROM m365sync.subscriptions s JOIN m365sync.calendars c USING (account_id, calendar_id)"
	  . " WHERE s.account_id = $account AND c.is_default AND c.graph_id = '$ada->{calendars}[0]{id}'"), '1',
	'the row names its calendar');
is($sub->{changeType}, 'created,updated,deleted', 'for created, updated and deleted');
is($sub->{notificationUrl}, "$rx/notify", 'to m365sync.notification_url');
is($sub->{lifecycleNotificationUrl}, "$rx/lifecycle", 'lifecycle events to m365sync.lifecycle_url');
like($sub->{clientState}, qr/^[A-Za-z0-9_-]{43}$/, 'clientState: 32 random bytes, base64url');
my $cs = $sub->{clientState};
is(db("SELECT count(*) FROM m365sync.subscriptions WHERE position(convert_to('$cs', 'UTF8') in client_state) > 0"),
	'0', 'the clientState is stored encrypted');
is(db("SELECT m365sync._decrypt_text('subscriptions', 'client_state', account_id, 0, client_state) = '$cs'"
	  . " FROM m365sync.subscriptions WHERE account_id = $account"), 't', 'and decrypts to what Graph holds');
like(db("SELECT subscription_expires_at BETWEEN now() + interval '3900 min' AND now() + interval '4230 min'"
	  . " FROM m365sync.account_status WHERE account_id = $account"), qr/^t$/,
	'it expires well inside 4,230 minutes');
is(db("SELECT renew_at - created_at BETWEEN interval '1900 min' AND interval '2100 min'"
	  . " FROM m365sync.subscriptions WHERE account_id = $account"), 't', 'renewal is due at half its lifetime');
my @val = grep { $_->{kind} eq 'validation' } @{ $t->receiver_log };
is(scalar(grep { $_->{sqlstate} eq '' } @val), 2, 'validation handshake of both URLs answered by handle_notification');

# --- an Outlook edit reaches FlowAgent within 2 s, with sync_interval = 1h ---
ok(wait_for("SELECT count(*) > 0 FROM m365sync.sync_run_log WHERE account_id = $account AND status = 'ok'"),
	'the first round ran');
ok(wait_for("SELECT next_sync_at > now() + interval '50 min' FROM m365sync.accounts WHERE account_id = $account"),
	'the next poll is an hour away');
outlook_create($ada, 'Created in Outlook');
my $dt = visible_within('flow-ada', 'Created in Outlook');
cmp_ok($dt, '<', 2, sprintf('a new Outlook event is in events() after %.2f s', $dt));
my $ev = outlook_create($ada, 'To be renamed');
ok(wait_for(seen('flow-ada', 'To be renamed'), 10), 'second event arrives');
$t->sim('PATCH', "/_sim/users/$ada->{id}/events/$ev->{id}", { subject => 'Renamed in Outlook' });
$dt = visible_within('flow-ada', 'Renamed in Outlook');
cmp_ok($dt, '<', 2, sprintf('an Outlook edit is visible after %.2f s', $dt));
is($t->as_user('flow-ada', "SELECT count(*) FROM m365sync.events(now(), now() + interval '5 days') WHERE subject = 'Renamed in Outlook'"),
	"1", 'through m365sync.events() as the user');
ok((grep { $_->{kind} eq 'notification' && $_->{sqlstate} eq '' } @{ $t->receiver_log }) >= 2,
	'the notifications were accepted');

# --- handle_notification's checks -------------------------------------------
my $json = JSON::PP->new->canonical;
my ($delivered) = grep { $_->{url} =~ m{/notify$} } reverse @{ $t->sim('GET', '/_sim/notifications')->{value} };
my $good = $json->encode($delivered->{body});
sub handle { my ($body, $tok) = @_;
	my $b = defined $body ? "\$b\$$body\$b\$" : 'NULL'; my $v = defined $tok ? "\$v\$$tok\$v\$" : 'NULL';
	return $t->sql("SELECT m365sync.handle_notification($b, $v)", role => 'flowagent'); }
my ($out, $state, $msg) = handle($good);
is("$state|$out", "|accepted", 'the app role may call it without a user context');
($out, $state) = handle(undef, 'Validation: token 1');
is("$state|$out", "|Validation: token 1", 'with a validation token it returns the token');

sub wait_quiet { wait_for("SELECT NOT EXISTS (SELECT 1 FROM m365sync.account_wakeups) AND NOT EXISTS"
	  . " (SELECT 1 FROM m365sync.sync_run_log WHERE finished_at IS NULL)", 10); }
wait_quiet();
my $runs = db("SELECT count(*) FROM m365sync.sync_run_log WHERE account_id = $account");
my %bad = (
	'wrong clientState' => do { my $b = $json->decode($good); $b->{value}[0]{clientState} = 'x' x 43; $b },
	'no clientState' => do { my $b = $json->decode($good); delete $b->{value}[0]{clientState}; $b },
	'unknown subscription' => do { my $b = $json->decode($good); $b->{value}[0]{subscriptionId} = '00000000-0000-0000-0000-000000000000'; $b },
	'two bad items' => do { my $b = $json->decode($good); my %i = %{ $b->{value}[0] };
		$i{clientState} = substr($cs, 0, 42) . (substr($cs, 42) eq 'A' ? 'B' : 'A'); $b->{value} = [ \%i, { %i, subscriptionId => 'ffffffff-0000-0000-0000-000000000000' } ]; $b },
);
for my $case (sort keys %bad)
{
	($out, $state, $msg) = handle($json->encode($bad{$case}));
	is($state, '42501', "$case: rejected with 42501");
	unlike($msg, qr/\Q$cs\E|\Q$bad{$case}{value}[0]{clientState}\E/, "$case: the message echoes no clientState")
	  if defined $bad{$case}{value}[0]{clientState};
}
sleep 1.5;
is(db("SELECT count(*) FROM m365sync.sync_run_log WHERE account_id = $account") . '/'
	  . db("SELECT count(*) FROM m365sync.account_wakeups"), "$runs/0", 'rejected notifications mark nothing due: no round ran');

for my $case (['not json', 'not json'], ['no value', '{"x":1}'], ['empty value', '{"value":[]}'],
	['value not an array', '{"value":{}}'], ['item not an object', '{"value":[1]}'],
	['bad subscriptionId', '{"value":[{"subscriptionId":"a b","clientState":"x"}]}'],
	['lifecycleEvent not a string', '{"value":[{"subscriptionId":"abc","clientState":"x","lifecycleEvent":5}]}'])
{
	($out, $state) = handle($case->[1]);
	is($state, '22P02', "malformed notification ($case->[0]): 22P02");
}
($out, $state) = handle(undef);
is($state, '22023', 'no body and no token: 22023');
($out, $state) = handle(undef, '');
is($state, '22023', 'an empty validation token: 22023');
sleep 1;
is(db("SELECT count(*) FROM m365sync.sync_run_log WHERE account_id = $account"), $runs,
	'malformed notifications do nothing');

# One POST may carry items of several subscriptions (GRAPH.md §11): a bad
# item is ignored and logged by subscription id, the good ones count.
{
	my $b = $json->decode($good);
	# a change not pulled yet (another etag): a replay of one already pulled marks nothing (061)
	$b->{value}[0]{resourceData}{'@odata.etag'} = 'W/"not-pulled-yet-2"';
	my %i = %{ $b->{value}[0] };
	$i{clientState} = substr($cs, 0, 42) . (substr($cs, 42) eq 'A' ? 'B' : 'A');
	$b->{value} = [ \%i, $b->{value}[0] ];
	my $offset = -s $node->logfile;
	($out, $state, $msg) = handle($json->encode($b));
	is("$state|$out", '|accepted', 'one bad item among good ones: accepted for the good one');
	ok(wait_for("SELECT count(*) > $runs FROM m365sync.sync_run_log WHERE account_id = $account AND status = 'ok'"),
		'and its account is pulled');
	my $log = PostgreSQL::Test::Utils::slurp_file($node->logfile, $offset);
	like($log, qr/ignored a notification item for subscription \Q$i{subscriptionId}\E/,
		'the bad item is logged by its subscription id');
	unlike($log, qr/\Q$i{clientState}\E|\Q$cs\E/, 'the log shows no clientState');
	wait_quiet();
	$runs = db("SELECT count(*) FROM m365sync.sync_run_log WHERE account_id = $account");
}

my $events_before = db("SELECT count(*) || '/' || max(event_id) FROM m365sync.events WHERE account_id = $account");
for (1 .. 5) { ($out, $state) = handle($good); last if $state ne ''; }
is($state, '', 'a replayed notification is accepted');
sleep 1.5;
is(db("SELECT count(*) FROM m365sync.sync_run_log WHERE account_id = $account") . '/'
	  . db("SELECT count(*) FROM m365sync.account_wakeups"), "$runs/0",
	'a replay of a change already pulled marks nothing: no round (issue 23; more in 061)');
is(db("SELECT count(*) || '/' || max(event_id) FROM m365sync.events WHERE account_id = $account"), $events_before,
	'replays change no event');
# A change not pulled yet (another changeKey) marks the account due, once.
my $newer = $json->decode($good);
$newer->{value}[0]{resourceData}{'@odata.etag'} = 'W/"not-pulled-yet"';
$newer = $json->encode($newer);
($out) = $t->sql("BEGIN; SELECT m365sync.handle_notification(\$b\$$newer\$b\$);"
	  . " SELECT m365sync.handle_notification(\$b\$$newer\$b\$);"
	  . " SELECT (SELECT count(*) FROM m365sync.account_wakeups) || '/' || (SELECT count(*) FROM m365sync.events); ROLLBACK;");
like($out, qr{^accepted\naccepted\n1/\d+}, 'a notification writes one due mark and no event content');

# --- lifecycle -------------------------------------------------------------
sub lifecycle { my ($id, $event) = @_; return $t->sim('POST', "/_sim/subscriptions/$id/lifecycle", { event => $event }); }
my $sid = db("SELECT subscription_id FROM m365sync.subscriptions WHERE account_id = $account");
is($sid, $sub->{id}, 'the stored id is Graph\'s');

$runs = db("SELECT count(*) FROM m365sync.sync_run_log WHERE account_id = $account");
lifecycle($sid, 'missed');
ok(wait_for("SELECT count(*) > $runs FROM m365sync.sync_run_log WHERE account_id = $account", 5),
	'lifecycle "missed": a resync round runs at once');

lifecycle($sid, 'reauthorizationRequired');
ok(wait_for("SELECT renewed_at IS NOT NULL FROM m365sync.subscriptions WHERE account_id = $account", 20),
	'lifecycle "reauthorizationRequired": the subscription is renewed');

$runs = db("SELECT count(*) FROM m365sync.sync_run_log WHERE account_id = $account");
lifecycle($sid, 'subscriptionRemoved');
ok(wait_for("SELECT subscription_id <> '$sid' FROM m365sync.subscriptions WHERE account_id = $account", 20),
	'lifecycle "subscriptionRemoved": a new subscription is made');
$subs = sim_subs($ada);
is(scalar(@$subs) . ':' . ($subs->[0]{id} eq db("SELECT subscription_id FROM m365sync.subscriptions WHERE account_id = $account") ? 'same' : 'other'),
	'1:same', 'Microsoft holds exactly the new one');
ok(wait_for("SELECT count(*) > $runs FROM m365sync.sync_run_log WHERE account_id = $account", 5), 'and a resync round ran');
$cs = $subs->[0]{clientState};
isnt($cs, $sub->{clientState}, 'with a new clientState');
outlook_create($ada, 'After recreation');
$dt = visible_within('flow-ada', 'After recreation');
cmp_ok($dt, '<', 2, 'notifications flow again');

# Graph itself, as the app (for changing a subscription behind our back).
sub graph { my ($method, $path, $body) = @_;
	my $tok = $t->sim('POST', '/_sim/tokens/issue', { client_id => $t->{client_id}, upn => 'ada@contoso.example' });
	my @cmd = ('curl', '-sS', '-o', '/dev/null', '-w', '%{http_code}', '--cacert', $t->ca_file, '-X', $method,
		'-H', "Authorization: Bearer $tok->{access_token}", '-H', 'Content-Type: application/json');
	push @cmd, '--data-binary', $json->encode($body) if $body;
	my $code = `@{[ join ' ', map { "'$_'" } @cmd, $t->sim_url . "/v1.0$path" ]}`;
	return $code; }
sub iso { my @g = gmtime($_[0]); return sprintf('%04d-%02d-%02dT%02d:%02d:%02dZ', $g[5] + 1900, $g[4] + 1, @g[3, 2, 1, 0]); }

# --- renewal before expiry (simulator clock) ---------------------------------
# As if most of its lifetime had passed: 60 minutes left at Microsoft and for us.
$sid = db("SELECT subscription_id FROM m365sync.subscriptions WHERE account_id = $account");
is(graph('PATCH', "/subscriptions/$sid", { expirationDateTime => iso(time + 3600) }), '200', 'expiry shortened at Microsoft');
db("UPDATE m365sync.subscriptions SET expires_at = now() + interval '60 min', renew_at = now(), renewed_at = NULL"
	  . " WHERE account_id = $account");
ok(wait_for("SELECT renewed_at IS NOT NULL AND expires_at > now() + interval '3900 min'"
	  . " AND renew_at BETWEEN now() + interval '1900 min' AND now() + interval '2100 min'"
	  . " FROM m365sync.subscriptions WHERE account_id = $account", 30),
	'past half its lifetime the worker renews it, the next renewal again at half');
is(db("SELECT subscription_id FROM m365sync.subscriptions WHERE account_id = $account"), $sid, 'the same subscription');
like((grep { $_->{mailbox} eq $ada->{id} } @{ $t->sim('GET', '/_sim/subscriptions')->{value} })[0]{expirationDateTime},
	qr/^\d{4}-/, 'Microsoft has the new expiry');
# Two hours later at Microsoft: without the renewal it would have expired.
$t->sim('POST', '/_sim/clock', { advance_seconds => 7200 });
outlook_create($ada, 'After renewal');
$dt = visible_within('flow-ada', 'After renewal');
cmp_ok($dt, '<', 2, sprintf('notifications still arrive after the old expiry (%.2f s)', $dt));

# A subscription gone at Microsoft without a word: the renewal's 404 makes a new one.
is(graph('DELETE', "/subscriptions/$sid"), '204', 'deleted behind our back');
is(scalar @{ sim_subs($ada) }, 0, 'gone at Microsoft');
db("UPDATE m365sync.subscriptions SET renew_at = now() WHERE account_id = $account");
ok(wait_for("SELECT count(*) = 1 AND bool_and(subscription_id <> '$sid') FROM m365sync.subscriptions WHERE account_id = $account", 20),
	'renewal answered 404: a new subscription is made');
is(scalar @{ sim_subs($ada) }, 1, 'and exists at Microsoft');

# --- the setting emptied: the worker removes the subscription; set again: a new one
$node->safe_psql('postgres', "ALTER SYSTEM SET m365sync.notification_url = ''; SELECT pg_reload_conf();");
ok(wait_for("SELECT subscription = 'off' FROM m365sync.account_status WHERE account_id = $account", 20)
	  && @{ sim_subs($ada) } == 0, 'notification_url emptied: the subscription is deleted at Microsoft');
$node->safe_psql('postgres', "ALTER SYSTEM SET m365sync.notification_url = '$rx/notify'; SELECT pg_reload_conf();");
ok(wait_for("SELECT subscription = 'active' FROM m365sync.account_status WHERE account_id = $account", 20)
	  && @{ sim_subs($ada) } == 1, 'set again: a new one is made');

# --- erasure deletes the subscription at Microsoft first ---------------------
my $bob = $t->add_sim_user('contoso.example', 'bob@contoso.example');
my $bob_account = $t->connect_user('flow-bob', 'bob@contoso.example');
ok(wait_for("SELECT subscription = 'active' FROM m365sync.account_status WHERE account_id = $bob_account"),
	'bob has a subscription too');
my @all_states = map { $_->{clientState} } @{ $t->sim('GET', '/_sim/subscriptions')->{value} };

outlook_create($ada, 'Before disconnect');
ok(wait_for(seen('flow-ada', 'Before disconnect'), 10), 'the new subscription notifies');
$sid = db("SELECT subscription_id FROM m365sync.subscriptions WHERE account_id = $account");
my ($latest) = grep { $_->{url} =~ m{/notify$} && $_->{body}{value}[0]{subscriptionId} eq $sid }
  reverse @{ $t->sim('GET', '/_sim/notifications')->{value} };
$good = $json->encode($latest->{body});
($out, $state) = handle($good);
is($state, '', 'the current subscription\'s notifications are accepted');
$t->as_user('flow-ada', 'SELECT m365sync.disconnect()');
is(scalar @{ sim_subs($ada) }, 0, 'disconnect() deleted the subscription at Microsoft');
($out, $state) = handle($good);
is($state, '42501', 'its old notifications are rejected');

# Graph failing the DELETE does not block erasure.
$t->sim('POST', '/_sim/faults', { route => 'subscriptions', method => 'DELETE', kind => '500', count => 20 });
$t->as_privacy("SELECT m365sync.purge_user('flow-bob')");
$t->sim('DELETE', '/_sim/faults');
is(db("SELECT count(*) FROM m365sync.accounts WHERE account_id = $bob_account"), '0', 'purge_user() erases even when Graph fails the DELETE');
is(scalar @{ sim_subs($bob) }, 1, 'the subscription is left to expire at Microsoft');
my $nlog = scalar @{ $t->receiver_log };
outlook_create($bob, 'After purge');
my $end = time + 10;
sleep 0.1 while time < $end && !grep { $_->{kind} eq 'notification' } @{ $t->receiver_log }[ $nlog .. $#{ $t->receiver_log } ];
my @after = @{ $t->receiver_log }[ $nlog .. $#{ $t->receiver_log } ];
ok(@after && !(grep { $_->{sqlstate} ne '42501' } @after), 'and its notifications fail the clientState check');

# --- nothing secret in the logs ---------------------------------------------
my $log = PostgreSQL::Test::Utils::slurp_file($node->logfile);
my @leaks = grep { index($log, $_) >= 0 } @all_states, $cs;
is(scalar @leaks, 0, 'no clientState in the server log');
my $rxlog = PostgreSQL::Test::Utils::slurp_file($t->{receiver_log});
is(scalar(grep { index($rxlog, $_) >= 0 } @all_states), 0, 'nor in the receiver log');

done_testing();
