# Connect: admin consent → app-only mailbox; user sign-in with PKCE →
# account connected with its calendars; bad and hostile input; nothing
# secret at rest or in the server log. Runs against graphsim over TLS.
use strict;
use warnings;
use M365Test;
use Test::More;

my $t = M365Test->new(name => 'connect');
my $node = $t->node;

# ---- configure -----------------------------------------------------------
my ($out, $st, $msg) = $t->sql("SELECT m365sync.configure('not-a-guid', 's', 'https://x.example/cb')", role => 'dba');
is($st, '22023', 'configure: client id must be a GUID');
like($msg, qr/client_id/, 'configure: the message names client_id');
($out, $st, $msg) = $t->sql("SELECT m365sync.configure('11111111-2222-3333-4444-555555555555', 's', 'http://evil.example/cb')", role => 'dba');
is($st, '22023', 'configure: plain http redirect only for localhost');
like($msg, qr/redirect_uri/, 'configure: the message names redirect_uri');
($out, $st) = $t->sql("SELECT m365sync.configure('11111111-2222-3333-4444-555555555555', 's', 'http://localhost:8080/cb')", role => 'dba');
is($st, '', 'configure: http://localhost is accepted');
($out, $st) = $t->sql("SELECT m365sync.configure('11111111-2222-3333-4444-555555555555', 's', 'https://x.example/cb')", role => 'flowagent', user => 'u1');
is($st, '42501', 'configure: not for the app role');

$t->setup_app;
my $secret = $t->{client_secret};
is($node->safe_psql('postgres', "SELECT count(*) FROM m365sync.app_config WHERE position(convert_to('$secret', 'UTF8') IN client_secret) > 0"),
	'0', 'client secret is not stored in clear');

# ---- admin consent → add_mailbox ------------------------------------------
my $room = $t->add_sim_user('contoso.example', 'room1@contoso.example');
$t->add_sim_user('contoso.example', 'alice@contoso.example');

($out, $st, $msg) = $t->sql("SELECT m365sync.add_mailbox('room-user', 'contoso.example', 'room1\@contoso.example')", role => 'dba');
is($st, '55000', 'add_mailbox refuses a tenant without consent');
like($msg, qr/consent/, '... saying consent is missing');
($out, $st) = $t->sql("SELECT m365sync.admin_consent_url('common')", role => 'dba');
is($st, '22023', "admin_consent_url refuses 'common'");

my $url = $t->as_admin("SELECT m365sync.admin_consent_url('contoso.example')");
like($url, qr{/contoso\.example/v2\.0/adminconsent\?client_id=11111111-2222-3333-4444-555555555555&scope=https%3A%2F%2Fgraph\.microsoft\.com%2F\.default&redirect_uri=https%3A%2F%2Fflowagent\.example%2Fm365%2Fcallback&state=[A-Za-z0-9_-]{43}$},
	'admin consent URL: tenant path, .default scope, redirect and state');
my $q = $t->browse($url);
is($q->{admin_consent}, 'True', 'simulator grants consent');
$t->as_admin("SELECT m365sync.admin_consent_complete('$q->{state}', '$q->{tenant}', true)");
is($node->safe_psql('postgres', "SELECT consent_status || ' ' || tenant_guid FROM m365sync.tenants WHERE tenant = 'contoso.example'"),
	"granted $q->{tenant}", 'tenant recorded as consented with its GUID');
($out, $st, $msg) = $t->sql("SELECT m365sync.admin_consent_complete('$q->{state}', '$q->{tenant}', true)", role => 'dba');
is($st, '22023', 'admin consent state is single-use');

my $room_id = $t->as_admin("SELECT m365sync.add_mailbox('room-user', 'contoso.example', 'room1\@contoso.example')");
like($room_id, qr/^\d+$/, 'add_mailbox returns an account id');
is($node->safe_psql('postgres', "SELECT mode || ' ' || status || ' ' || (next_sync_at <= now() OR last_sync_at IS NOT NULL) FROM m365sync.accounts WHERE account_id = $room_id"),
	'application connected true', 'app-only account connected and due (or already synced by the worker)');
is($node->safe_psql('postgres', "SELECT ms_user_id FROM m365sync.accounts WHERE account_id = $room_id"),
	$room->{id}, 'Graph user id recorded');
is($node->safe_psql('postgres', "SELECT count(*) || ' ' || count(*) FILTER (WHERE sync_enabled AND is_default) FROM m365sync.calendars WHERE account_id = $room_id"),
	'1 1', 'its calendar listed, the default one enabled');

# Declined consent is recorded, not an error.
$t->add_sim_user('fabrikam.example', 'bob@fabrikam.example');
$t->sim('POST', '/_sim/authorize_as', { upn => undef, decline => JSON::PP::true, admin_consent_error => 'permission_denied' });
$q = $t->admin_consent('fabrikam.example');
is($q->{error}, 'permission_denied', 'simulator reports the decline');
is($node->safe_psql('postgres', "SELECT consent_status || ' ' || consent_error FROM m365sync.tenants WHERE tenant = 'fabrikam.example'"),
	'permission_denied permission_denied', 'declined consent recorded');
($out, $st, $msg, my $err) = $t->sql("SELECT m365sync.add_mailbox('bob', 'fabrikam.example', 'bob\@fabrikam.example')", role => 'dba');
is($st, '55000', 'add_mailbox refuses the declined tenant');
like($err, qr/HINT:.*admin_consent_url/, '... with a hint to admin consent');
$t->sim('POST', '/_sim/authorize_as', { upn => undef });

# ---- user connect ---------------------------------------------------------
my $alice_cal = $t->sim('POST', '/_sim/users/alice@contoso.example/calendars', { name => 'Team', can_edit => JSON::PP::false });
($out, $st, $msg) = $t->sql('SELECT m365sync.connect_url()', role => 'flowagent');
is($st, '28000', 'connect_url without flowagent_user: 28000');

my ($state, $code, $curl) = $t->authorize('u1', 'alice@contoso.example');
like($curl, qr{/organizations/oauth2/v2\.0/authorize\?client_id=11111111-2222-3333-4444-555555555555&response_type=code&redirect_uri=https%3A%2F%2Fflowagent\.example%2Fm365%2Fcallback&response_mode=query&scope=offline_access%20User\.Read%20Calendars\.ReadWrite&state=[A-Za-z0-9_-]{43}&code_challenge=[A-Za-z0-9_-]{43}&code_challenge_method=S256$},
	'authorize URL: code flow, query mode, scopes, state, PKCE S256');
ok(defined $code, 'simulator redirected back with a code');
is($node->safe_psql('postgres', "SELECT count(*) FROM m365sync.oauth_states WHERE kind = 'connect' AND flowagent_user = 'u1' AND expires_at BETWEEN now() + interval '9 minutes' AND now() + interval '10 minutes 1 second' AND code_verifier IS NOT NULL AND state_hash = sha256(convert_to('$state', 'UTF8'))"),
	'1', 'state stored as its SHA-256, expiring in 10 minutes, verifier kept');

# The state belongs to u1: another user cannot complete it, nothing written.
($out, $st, $msg) = $t->sql("SELECT m365sync.connect_complete('$state', '$code')", role => 'flowagent', user => 'u2');
is($st, '28000', "another user's state: 28000");
is($node->safe_psql('postgres', 'SELECT count(*) FROM m365sync.accounts'), '1', '... and no account written');

my $alice_id = $t->as_user('u1', "SELECT m365sync.connect_complete('$state', '$code')");
like($alice_id, qr/^\d+$/, 'connect_complete returns an account id');
is($node->safe_psql('postgres', "SELECT mode || ' ' || status || ' ' || (next_sync_at <= now() OR last_sync_at IS NOT NULL) || ' ' || (token_expires_at > now() + interval '50 minutes') FROM m365sync.accounts WHERE account_id = $alice_id"),
	'delegated connected true true', 'account connected, first sync due or done, token expiry recorded');
is($node->safe_psql('postgres', "SELECT string_agg(is_default || '/' || can_edit || '/' || sync_enabled, ',' ORDER BY is_default DESC) FROM m365sync.calendars WHERE account_id = $alice_id"),
	'true/true/true,false/false/false', 'calendars listed; only the default one enabled');
is($node->safe_psql('postgres', "SELECT count(*) FROM m365sync.calendars WHERE account_id = $alice_id AND graph_id = '$alice_cal->{id}'"),
	'1', 'the second calendar keyed by its Graph id');
is($node->safe_psql('postgres', "SELECT m365sync._decrypt_text('calendars', 'name', account_id, calendar_id, name) FROM m365sync.calendars WHERE account_id = $alice_id AND NOT is_default"),
	'Team', 'calendar names stored encrypted and decrypt');
is($node->safe_psql('postgres', "SELECT used_at IS NOT NULL AND code_verifier IS NULL FROM m365sync.oauth_states WHERE state_hash = sha256(convert_to('$state', 'UTF8'))"),
	't', 'state marked used, verifier dropped');

# The simulator saw the PKCE verifier (it checks S256) and no secret in a URL.
my @token_calls = grep { $_->{path} =~ m{/oauth2/v2\.0/token$} } @{ $t->sim_log };
ok(scalar(@token_calls) >= 2, 'token endpoint called');
ok(!(grep { ($_->{query} // '') =~ /secret|code|token/ } @token_calls), 'no credential in a token request URL');
my @graph = grep { $_->{path} =~ m{^/v1\.0/} } @{ $t->sim_log };
ok(@graph && !(grep { !$_->{headers}{'client-request-id'} && !$_->{headers}{'Client-Request-Id'} } @graph),
	'every Graph request carries a client-request-id');

# ---- replay, expiry, malformed, wrong code --------------------------------
($out, $st, $msg) = $t->sql("SELECT m365sync.connect_complete('$state', '$code')", role => 'flowagent', user => 'u1');
is($st, '22023', 'replayed state: 22023');
like($msg, qr/already used/, '... says it was already used');

($out, $st, $msg) = $t->sql("SELECT m365sync.connect_complete('short', 'abc')", role => 'flowagent', user => 'u1');
is($st, '22023', 'malformed state: 22023');
like($msg, qr/state is malformed/, '... names the state');
($out, $st, $msg) = $t->sql("SELECT m365sync.connect_complete('" . ('A' x 43) . "', 'abc')", role => 'flowagent', user => 'u1');
is($st, '22023', 'unknown state: 22023');
like($msg, qr/state is unknown/, '... says unknown');
($out, $st, $msg) = $t->sql("SELECT m365sync.connect_complete('" . ('A' x 43) . "', 'a b')", role => 'flowagent', user => 'u1');
is($st, '22023', 'malformed code: 22023');
like($msg, qr/code is malformed/, '... names the code');

# Expired: a state older than 10 minutes.
my ($s2, $c2) = $t->authorize('u3', 'bob@fabrikam.example');
$node->safe_psql('postgres', "UPDATE m365sync.oauth_states SET expires_at = now() - interval '1 second' WHERE state_hash = sha256(convert_to('$s2', 'UTF8'))");
($out, $st, $msg) = $t->sql("SELECT m365sync.connect_complete('$s2', '$c2')", role => 'flowagent', user => 'u3');
is($st, '22023', 'expired state: 22023');
like($msg, qr/expired/, '... says expired');

# Wrong code: Microsoft refuses, nothing is written, the state stays usable.
my ($s3, $c3) = $t->authorize('u4', 'bob@fabrikam.example');
($out, $st, $msg) = $t->sql("SELECT m365sync.connect_complete('$s3', 'not-the-code')", role => 'flowagent', user => 'u4');
is($st, '22023', 'wrong code: 22023');
like($msg, qr/rejected the authorization grant/, '... Microsoft rejected the grant');
is($node->safe_psql('postgres', "SELECT count(*) FROM m365sync.accounts WHERE flowagent_user = 'u4'"), '0', '... nothing written');

# Code reused (AADSTS54005): alice's code again with a fresh state of u5.
my ($s4) = $t->authorize('u5', 'alice@contoso.example');
($out, $st, $msg, $err) = $t->sql("SELECT m365sync.connect_complete('$s4', '$code')", role => 'flowagent', user => 'u5');
is($st, '22023', 'reused code: 22023');
like($err, qr/AADSTS54005/, '... reports AADSTS54005');

# PKCE: the code of one sign-in with the verifier of another is refused by the simulator.
my ($s5, $c5) = $t->authorize('u6', 'bob@fabrikam.example');
my ($s6, $c6) = $t->authorize('u6', 'bob@fabrikam.example');
($out, $st, $msg, $err) = $t->sql("SELECT m365sync.connect_complete('$s6', '$c5')", role => 'flowagent', user => 'u6');
is($st, '22023', 'code with the verifier of another sign-in: refused');
like($err, qr/AADSTS50148/, '... PKCE mismatch (AADSTS50148)');

# Wrong client secret (AADSTS7000215): clear error, nothing written.
$t->sim('POST', '/_sim/apps', { client_id => $t->{client_id}, client_secret => 'rotated-elsewhere',
	redirect_uris => [ $t->{redirect_uri} ] });
($out, $st, $msg, $err) = $t->sql("SELECT m365sync.connect_complete('$s6', '$c6')", role => 'flowagent', user => 'u6');
is($st, '28000', 'wrong client secret: 28000');
like($msg, qr/rejected the app's credentials/, '... says the app credentials were rejected');
like($err, qr/AADSTS7000215/, '... reports AADSTS7000215');
like($err, qr/HINT:.*configure/, '... hint to configure()');
is($node->safe_psql('postgres', "SELECT count(*) FROM m365sync.accounts WHERE flowagent_user = 'u6'"), '0', '... nothing written');
$t->sim('POST', '/_sim/apps', { client_id => $t->{client_id}, client_secret => $secret,
	redirect_uris => [ $t->{redirect_uri} ] });

# ---- reconnect the same Microsoft account: same row ------------------------
my $again = $t->connect_user('u1', 'alice@contoso.example');
is($again, $alice_id, 'reconnecting the same Microsoft account reuses the account row');
is($node->safe_psql('postgres', "SELECT count(*) FROM m365sync.calendars WHERE account_id = $alice_id"), '2', '... and its calendars');

# A different Microsoft account for the same user is refused.
($state, $code) = $t->authorize('u1', 'bob@fabrikam.example');
($out, $st, $msg) = $t->sql("SELECT m365sync.connect_complete('$state', '$code')", role => 'flowagent', user => 'u1');
is($st, '55000', 'another Microsoft account for a connected user: 55000');

# ---- nothing secret at rest or in the log ----------------------------------
my $tokens = $t->sim('POST', '/_sim/tokens/issue', { upn => 'alice@contoso.example' });
$node->safe_psql('postgres', 'CHECKPOINT');
my @needles = ($secret, 'alice@contoso.example', 'room1@contoso.example', $code);
my $hits = 0;
for my $needle (@needles)
{
	my $out = `grep -rlF -- '$needle' '${\ $node->data_dir }' '${\ $node->logfile }' 2>/dev/null`;
	$hits += scalar(split /\n/, $out);
}
is($hits, 0, 'client secret, addresses and codes appear nowhere in the data directory or server log');

# Tokens: every stored access/refresh token, decrypted, must not be on disk.
my @secrets = split /\n/, $node->safe_psql('postgres',
	"SELECT m365sync._decrypt_text('accounts', 'access_token', account_id, account_id, access_token) FROM m365sync.accounts WHERE access_token IS NOT NULL
	 UNION ALL SELECT m365sync._decrypt_text('accounts', 'refresh_token', account_id, account_id, refresh_token) FROM m365sync.accounts WHERE refresh_token IS NOT NULL");
ok(@secrets >= 3, 'tokens stored (encrypted)');
$hits = 0;
for my $needle (@secrets)
{
	my $frag = substr($needle, 0, 40);
	my $out = `grep -rlF -- '$frag' '${\ $node->data_dir }' '${\ $node->logfile }' 2>/dev/null`;
	$hits += scalar(split /\n/, $out);
}
is($hits, 0, 'no token appears in the data directory or server log');

# ---- disconnect -------------------------------------------------------------
$t->as_user('u1', 'SELECT m365sync.disconnect()');
is($node->safe_psql('postgres', "SELECT count(*) FROM m365sync.accounts WHERE flowagent_user = 'u1'"), '0', 'disconnect removes the account');
is($node->safe_psql('postgres', "SELECT count(*) FROM m365sync.data_keys WHERE account_id = $alice_id"), '0', '... and its data key');
is($node->safe_psql('postgres', "SELECT count(*) FROM m365sync.calendars WHERE account_id = $alice_id"), '0', '... and its calendars');
is($node->safe_psql('postgres', "SELECT count(*) FROM m365sync.accounts WHERE account_id = $room_id"), '1', "... and nobody else's");

done_testing();
