# Token life: expired access tokens are refreshed transparently (before
# expiry and once on 401), rotated refresh tokens are saved, concurrent
# refreshes of one account are serialised, a revoked grant stops the account
# (reauth_required) and withdrawn consent marks it consent_required; an
# unavailable token endpoint backs off.
use strict;
use warnings;
use IPC::Run;
use M365Test;
use Test::More;

my $t = M365Test->new(name => 'tokens');
my $node = $t->node;
$t->setup_app;
$t->add_sim_user('contoso.example', 'alice@contoso.example');
$t->add_sim_user('northwind.example', 'carol@northwind.example');
$t->add_sim_user('contoso.example', 'room1@contoso.example');

my $alice = $t->connect_user('u1', 'alice@contoso.example');
my $carol = $t->connect_user('u2', 'carol@northwind.example');

sub refresh_token_of
{
	my ($id) = @_;
	return $node->safe_psql('postgres',
		"SELECT m365sync._decrypt_text('accounts', 'refresh_token', account_id, account_id, refresh_token) FROM m365sync.accounts WHERE account_id = $id");
}

sub token_grants
{
	return scalar grep { $_->{path} =~ m{/oauth2/v2\.0/token$} && ($_->{body} // '') =~ /grant_type=refresh_token/ } @{ $t->sim_log };
}

sub graph_statuses
{
	return join ',', map { $_->{status} } grep { $_->{path} =~ m{^/v1\.0/} } @{ $t->sim_log };
}

# ---- 401 → refresh once → retry --------------------------------------------
my $rt0 = refresh_token_of($alice);
$t->sim('POST', '/_sim/tokens/expire', { upn => 'alice@contoso.example' });
$t->sim_clear_log;
is($node->safe_psql('postgres', "SELECT refresh_calendars($alice)"), 'connected',
	'access token revoked early (401): refreshed transparently, account stays connected');
is(token_grants(), 1, '... with one refresh');
is(graph_statuses(), '401,200', '... and one retry of the Graph call');
my $rt1 = refresh_token_of($alice);
isnt($rt1, $rt0, 'the rotated refresh token replaced the old one');

# ---- refresh before expiry: no 401 at all -----------------------------------
$node->safe_psql('postgres', "UPDATE m365sync.accounts SET token_expires_at = now() + interval '1 minute' WHERE account_id = $alice");
$t->sim_clear_log;
is($node->safe_psql('postgres', "SELECT refresh_calendars($alice)"), 'connected', 'token about to expire: refreshed first');
is(token_grants(), 1, '... one refresh');
is(graph_statuses(), '200', '... and Graph never saw the old token');
is($node->safe_psql('postgres', "SELECT token_expires_at > now() + interval '50 minutes' FROM m365sync.accounts WHERE account_id = $alice"),
	't', '... new expiry saved');

# ---- concurrent refreshes: one winner, no invalid_grant ---------------------
$node->safe_psql('postgres', "UPDATE m365sync.accounts SET token_expires_at = now() WHERE account_id = $alice");
$t->sim('POST', '/_sim/faults', { kind => 'slow', delay_ms => 1500, route => 'oauth2/v2.0/token', count => 1 });
$t->sim_clear_log;
my @runs;
for my $i (1 .. 3)
{
	my ($out, $err) = ('', '');
	my $h = IPC::Run::start([ 'psql', '-X', '-A', '-t', '-d', $node->connstr('postgres'),
		'-c', "SELECT refresh_calendars($alice)" ], '>', \$out, '2>', \$err);
	push @runs, [ $h, \$out, \$err ];
}
$_->[0]->finish for @runs;
is(join(',', map { ${ $_->[1] } =~ s/\s+//gr } @runs), 'connected,connected,connected',
	'three sessions refreshing one account at once all succeed');
is(token_grants(), 1, '... with exactly one refresh (the row lock serialises them)');
$t->sim('DELETE', '/_sim/faults');

# ---- temporarily unavailable: backoff, still connected ---------------------
$node->safe_psql('postgres', "UPDATE m365sync.accounts SET token_expires_at = now() WHERE account_id = $alice");
$t->sim('POST', '/_sim/faults', { kind => '503', route => 'oauth2/v2.0/token', count => 1, retry_after => '7' });
is($node->safe_psql('postgres', "SELECT refresh_calendars($alice)"), 'connected', 'token endpoint 503: account stays connected');
is($node->safe_psql('postgres', "SELECT failures || ' ' || (backoff_until BETWEEN now() + interval '6 seconds' AND now() + interval '8 seconds') FROM m365sync.accounts WHERE account_id = $alice"),
	'1 true', '... and backs off as long as Retry-After says');
$t->sim('DELETE', '/_sim/faults');
is($node->safe_psql('postgres', "SELECT refresh_calendars($alice)"), 'connected', 'next attempt refreshes');

# ---- revoked refresh token → reauth_required, no further requests ----------
$t->sim('POST', '/_sim/tokens/revoke', { upn => 'alice@contoso.example' });
$t->sim('POST', '/_sim/tokens/expire', { upn => 'alice@contoso.example' });
is($node->safe_psql('postgres', "SELECT refresh_calendars($alice)"), 'reauth_required', 'revoked grant: reauth_required');
is($node->safe_psql('postgres', "SELECT last_error || ' ' || (next_sync_at IS NULL) FROM m365sync.account_status WHERE account_id = $alice"),
	'AADSTS70008 true', '... error code shown, polling stopped');
$t->sim_clear_log;
is($node->safe_psql('postgres', "SELECT refresh_calendars($alice)"), 'reauth_required', 'asked again: still reauth_required');
is(scalar @{ $t->sim_log }, 0, '... and no request was sent');

# Reconnecting brings it back, same account.
is($t->connect_user('u1', 'alice@contoso.example'), $alice, 'reconnect after reauth_required: same account');
is($node->safe_psql('postgres', "SELECT status FROM m365sync.accounts WHERE account_id = $alice"), 'connected', '... connected again');

# ---- consent withdrawn → consent_required ----------------------------------
$t->sim('POST', '/_sim/consent', { tenant => 'northwind.example', granted => JSON::PP::false });
$t->sim('POST', '/_sim/tokens/expire', { upn => 'carol@northwind.example' });
is($node->safe_psql('postgres', "SELECT refresh_calendars($carol)"), 'consent_required', 'consent withdrawn: consent_required');
is($node->safe_psql('postgres', "SELECT last_error FROM m365sync.accounts WHERE account_id = $carol"), 'AADSTS65001', '... AADSTS65001 recorded');

# App-only account: withdrawn consent, then granted again.
$t->admin_consent('contoso.example');
my $room = $t->as_admin("SELECT m365sync.add_mailbox('room-user', 'contoso.example', 'room1\@contoso.example')");
$t->sim('POST', '/_sim/consent', { tenant => 'contoso.example', granted => JSON::PP::false });
$t->sim('POST', '/_sim/tokens/expire', { tenant => 'contoso.example' });
is($node->safe_psql('postgres', "SELECT refresh_calendars($room)"), 'consent_required', 'app-only account: consent withdrawn → consent_required');
$t->admin_consent('contoso.example');
is($node->safe_psql('postgres', "SELECT status FROM m365sync.accounts WHERE account_id = $room"), 'connected',
	'consent granted again: app-only account connected');
is($node->safe_psql('postgres', "SELECT refresh_calendars($room)"), 'connected', '... and gets a token again');

done_testing();
