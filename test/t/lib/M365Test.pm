# M365Test — shared set-up for m365sync TAP tests.
#
# Starts the Graph simulator over TLS (test/graphsim, certificates from its
# mkcert), a PostgreSQL cluster with m365sync preloaded, a master key file
# and graph_url / login_url / ca_file pointing at the simulator, and offers
# small helpers: the simulator's control API, following an authorize
# redirect like a browser, running SQL as the FlowAgent app role with the
# SQLSTATE of an error, and the usual app / consent / connect flows.
#
#   my $t = M365Test->new;                 # cluster + simulator, extension created
#   M365Test->new(db => 'flowagent')       # ... in that database (m365sync.database), not postgres
#   $t->setup_app;                         # app in the simulator, m365sync.configure()
#   my $id = $t->connect_user('u1', 'alice@contoso.example');
#   M365Test->new(version => "0.1.0");   # extension created at a shipped version (test/upgrade)
#   my $t = M365Test->citus;               # a Citus coordinator (the test's node) + workers w1, w2
#   $t->ledger_fa_create($acc); $t->ledger_ol_create($acc); $t->ledger_settle('what', @accs);
#                                          # edits on both sides, then 0 lost / 0 duplicated
#
# Every TAP test makes its cluster here, and every key file is written by
# write_key_file. Options of new:
#   name => 'x'          the node's name (log and data directory names)
#   db => 'flowagent'    m365sync.database, created if not postgres
#   conf => "..."        more postgresql.conf lines (they win over ours)
#   init => {...}        options of PostgreSQL::Test::Cluster->init
#   keys => ["k1:<hex>"] the master key file's lines (default: one random k1)
#   sim => 0             no simulator: graph_url, login_url and ca_file keep
#                        their defaults (tests of the server alone)
#   extension => 0       the extension is not created (nor the test roles)
#   seed, sim_args       passed to the simulator
#
# Never prints a secret on success; on failure test output may show
# simulator data, which is synthetic.
package M365Test;

use strict;
use warnings;
use Carp;
use File::Basename qw(dirname);
use File::Copy ();
use IPC::Run;
use Time::HiRes ();
use JSON::PP;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;

my $json = JSON::PP->new->canonical->allow_nonref;

sub unescape
{
	my ($s) = @_;
	$s =~ s/%([0-9A-Fa-f]{2})/chr(hex($1))/ge;
	return $s;
}

sub src_dir
{
	return "$ENV{M365_SRC}/test" if $ENV{M365_SRC};
	return dirname(__FILE__) . '/../..';
}

# Start graphsim with the given certificate pair; returns its base URL.
sub start_sim
{
	my ($self, %o) = @_;
	my $cert = $o{cert} // 'server';
	my ($out, $err) = ('', '');
	my @cmd = ('python3', src_dir() . '/graphsim/graphsim.py', '--port', '0',
		'--tls-cert', "$self->{certs}/$cert.crt", '--tls-key', "$self->{certs}/$cert.key",
		'--seed', $o{seed} // 1,
		# webhook receivers the tests run use the same test CA
		'--notify-ca-file', "$self->{certs}/ca.crt", @{ $o{sim_args} // [] });
	my $h = IPC::Run::start(\@cmd, '>', \$out, '2>', \$err);
	my $deadline = time + 30;
	while ($out !~ m{graphsim listening on (https://127\.0\.0\.1:\d+)} && time < $deadline)
	{
		$h->pump_nb;
		select(undef, undef, undef, 0.05);
	}
	croak "graphsim did not start: $err" unless $out =~ m{graphsim listening on (https://127\.0\.0\.1:\d+)};
	push @{ $self->{sims} }, $h;
	return $1;
}

sub new
{
	my ($class, %o) = @_;
	my $self = bless {}, $class;
	my $dir = PostgreSQL::Test::Utils::tempdir;
	$self->{dir} = $dir;
	if ($o{sim} // 1)
	{
		$self->{certs} = "$dir/certs";
		system('sh', src_dir() . '/graphsim/mkcert', $self->{certs}) == 0 or croak "mkcert failed";
		$self->{sim} = $self->start_sim(sim_args => $o{sim_args}, seed => $o{seed});
	}

	$self->{keyfile} = "$dir/master.key";
	$self->write_key_file($self->{keyfile}, @{ $o{keys} // [ 'k1:' . random_hex(32) ] });

	my $db = $self->{db} = $o{db} // 'postgres';
	my $node = $self->{node} = $self->cluster($o{name} // 'm365', $db, $self->{keyfile},
		init => $o{init}, conf => $o{conf});
	$node->safe_psql('postgres', "CREATE DATABASE $db") if $db ne 'postgres';
	return $self unless $o{extension} // 1;
	$self->stage_old_version($o{version}) if $o{version};
	$node->safe_psql($db, 'CREATE EXTENSION m365sync'
		  . ($o{version} ? " VERSION '$o{version}'" : ''));
	$node->safe_psql($db, q{
		CREATE ROLE flowagent LOGIN IN ROLE m365sync_app;
		CREATE ROLE dba LOGIN IN ROLE m365sync_admin;
		-- GDPR export and erasure (m365sync_privacy, from 0.2.0)
		DO $$ BEGIN
			IF EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'm365sync_privacy') THEN
				CREATE ROLE privacy LOGIN IN ROLE m365sync_privacy;
			END IF;
		END $$;
		-- test hook: re-read one account's calendars with its stored token
		CREATE FUNCTION public.refresh_calendars(bigint) RETURNS text
			LANGUAGE c AS '$libdir/m365sync', 'm365sync_debug_refresh_calendars';
	});
	return $self;
}

# The one way a test cluster is made: m365sync preloaded, serving $db with
# the given key file, pointed at the simulator when there is one, then the
# caller's own lines (init => {...} for Cluster->init, conf => "..."). Started.
sub cluster
{
	my ($self, $name, $db, $keyfile, %o) = @_;
	my $node = PostgreSQL::Test::Cluster->new($name);
	$node->init($o{init} ? %{ $o{init} } : ());
	my $sim_conf = !$self->{sim} ? '' : <<"CONF";
m365sync.graph_url = '$self->{sim}/v1.0'
m365sync.login_url = '$self->{sim}'
m365sync.ca_file = '$self->{certs}/ca.crt'
CONF
	$node->append_conf('postgresql.conf', <<"CONF");
shared_preload_libraries = 'm365sync'
m365sync.database = '$db'
m365sync.key_file = '$keyfile'
${sim_conf}m365sync.http_timeout = '10s'
log_min_messages = info
# The statements the tests send carry codes and addresses as literals, and
# PostgreSQL (not m365sync) would log them; the leak checks measure what
# m365sync itself writes. FlowAgent passes them as bind parameters.
log_statement = none
log_min_error_statement = panic
CONF
	$node->append_conf('postgresql.conf', $o{conf}) if $o{conf};
	$node->start;
	return $node;
}

# Put a shipped version's install script (test/upgrade/m365sync--V.sql)
# into the staged installation's extension directory, so that CREATE
# EXTENSION m365sync VERSION 'V' and the upgrade from it can run.
sub stage_old_version
{
	my ($self, $version) = @_;
	my $src = src_dir() . "/upgrade/m365sync--$version.sql";
	my $dir = $self->{node}->config_data('--sharedir') . '/extension';
	File::Copy::copy($src, "$dir/m365sync--$version.sql") or croak "copy $src: $!";
}

# A second cluster with m365sync preloaded and its own key file (the given
# lines, e.g. "k2:<64 hex>"), pointing at the same simulator; its worker
# serves database "postgres", where the extension is not created.
sub new_node
{
	my ($self, $name, @key_lines) = @_;
	my $keyfile = "$self->{dir}/$name.key";
	$self->write_key_file($keyfile, @key_lines);
	return ($self->cluster($name, 'postgres', $keyfile), $keyfile);
}

# The one key-file writer: (re)place the file at $path with the given lines
# (a newline added where one is missing; no lines: an empty file), mode
# 0600. Written beside it and renamed over it, so a backend reading the key
# file sees the old file or the new one, never half of one.
sub write_key_file
{
	my ($self, $path, @lines) = @_;
	my $new = "$path.new";
	open my $fh, '>', $new or croak "$new: $!";
	print $fh map { /\n\z/ ? $_ : "$_\n" } @lines;
	close $fh or croak "$new: $!";
	chmod 0600, $new;
	rename $new, $path or croak "rename $new: $!";
}

# $n random bytes from /dev/urandom, as hex (keys, markers).
sub random_hex
{
	my ($n) = @_;
	open my $fh, '<:raw', '/dev/urandom' or croak "urandom: $!";
	read($fh, my $bytes, $n) == $n or croak 'short read from /dev/urandom';
	close $fh;
	return unpack('H*', $bytes);
}


# Run a client program (pg_dump, pg_restore, psql, ...) of the installation
# under test; returns (exit status, stdout, stderr).
sub run_client
{
	my ($self, @cmd) = @_;
	my ($out, $err) = ('', '');
	$cmd[0] = $self->{node}->installed_command($cmd[0]);
	IPC::Run::run(\@cmd, '<', \undef, '>', \$out, '2>', \$err);
	return ($? >> 8, $out, $err);
}

sub node { $_[0]->{node} }
sub db { $_[0]->{db} }
sub keyfile { $_[0]->{keyfile} }
sub sim_url { $_[0]->{sim} }
sub ca_file { "$_[0]->{certs}/ca.crt" }
sub certs { $_[0]->{certs} }

# Call the simulator's control API (or any path); returns decoded JSON.
sub sim
{
	my ($self, $method, $path, $body) = @_;
	my @cmd = ('curl', '-sS', '--cacert', $self->ca_file, '-X', $method,
		'-H', 'Content-Type: application/json', "$self->{sim}$path");
	push @cmd, '--data-binary', $json->encode($body) if defined $body;
	my ($out, $err) = ('', '');
	IPC::Run::run(\@cmd, '>', \$out, '2>', \$err) or croak "curl $path: $err";
	return $out eq '' ? undef : $json->decode($out);
}

sub sim_log
{
	my ($self) = @_;
	return $self->sim('GET', '/_sim/log')->{value};
}

sub sim_clear_log
{
	my ($self) = @_;
	$self->sim('DELETE', '/_sim/log');
}

# Open a URL like a browser would, without following the redirect; returns
# the Location's query parameters as a hash (plus _location, _status).
sub browse
{
	my ($self, $url) = @_;
	my ($out, $err) = ('', '');
	IPC::Run::run([ 'curl', '-sS', '--cacert', $self->ca_file, '-o', '/dev/null',
		'-w', '%{http_code} %{redirect_url}', $url ], '>', \$out, '2>', \$err)
	  or croak "browse: $err";
	my ($status, $loc) = split / /, $out, 2;
	my %q = (_status => $status, _location => $loc // '');
	if (defined $loc && $loc =~ /\?(.*)$/)
	{
		for my $kv (split /&/, $1)
		{
			my ($k, $v) = split /=/, $kv, 2;
			$v //= '';
			$v =~ tr/+/ /;
			$q{ unescape($k) } = unescape($v);
		}
	}
	return \%q;
}

# Run SQL as a role; returns (stdout, sqlstate, message). sqlstate is ''
# when the statement succeeded.
#
# With user => the SQL runs as FlowAgent does: in one transaction that sets
# the acting user with SET LOCAL (a value counts only in the transaction that
# set it). SQL that opens its own transaction (starts with BEGIN) gets the
# SET LOCAL right after its BEGIN and ends it itself. The first error stops
# the script and rolls the whole transaction back.
sub sql
{
	my ($self, $sql, %o) = @_;
	my ($out, $err) = ('', '');
	my @extra = ('-v', 'VERBOSITY=verbose');
	push @extra, '-U', $o{role} if $o{role};
	if (defined $o{user})
	{
		my $set = "SET LOCAL m365sync.flowagent_user = '$o{user}';";
		$sql = ($sql =~ s/^\s*BEGIN\s*;/BEGIN; $set/i) ? $sql : "BEGIN; $set\n$sql\n;\nCOMMIT;";
	}
	$self->{node}->psql($o{db} // $self->{db}, $sql, stdout => \$out, stderr => \$err,
		extra_params => \@extra, on_error_stop => 1);
	if ($err =~ /ERROR:\s+([0-9A-Z]{5}):\s+(.*)/)
	{
		return ($out, $1, $2, $err);
	}
	return ($out, '', '', $err);
}

# As the FlowAgent app for a user: the value, or die with the error.
sub as_user
{
	my ($self, $user, $sql, %o) = @_;
	my ($out, $state, $msg, $err) = $self->sql($sql, role => 'flowagent', user => $user, db => $o{db});
	croak "as $user: $state $msg\n$err" if $state ne '';
	return $out;
}

sub as_admin
{
	my ($self, $sql, %o) = @_;
	my ($out, $state, $msg, $err) = $self->sql($sql, role => 'dba', db => $o{db});
	croak "as dba: $state $msg\n$err" if $state ne '';
	return $out;
}

# Run SQL as the privacy officer (role privacy, member of m365sync_privacy).
sub as_privacy
{
	my ($self, $sql, %o) = @_;
	my ($out, $state, $msg, $err) = $self->sql($sql, role => 'privacy', db => $o{db});
	croak "as privacy: $state $msg\n$err" if $state ne '';
	return $out;
}

# Register the app in the simulator and configure m365sync with it.
sub setup_app
{
	my ($self, %o) = @_;
	$self->{client_id} = $o{client_id} // '11111111-2222-3333-4444-555555555555';
	$self->{client_secret} = $o{client_secret} // 'sim-secret-' . join('', map { ('a' .. 'z')[ rand 26 ] } 1 .. 24);
	$self->{redirect_uri} = $o{redirect_uri} // 'https://flowagent.example/m365/callback';
	$self->sim('POST', '/_sim/apps', {
		client_id => $self->{client_id}, client_secret => $self->{client_secret},
		redirect_uris => [ $self->{redirect_uri} ] });
	$self->as_admin("SELECT m365sync.configure('$self->{client_id}', '$self->{client_secret}', '$self->{redirect_uri}')");
	return $self;
}

# A tenant and a user in the simulator; returns the simulator's user JSON.
sub add_sim_user
{
	my ($self, $tenant, $upn, %o) = @_;
	$self->sim('POST', '/_sim/tenants', { tenant => $tenant });
	return $self->sim('POST', '/_sim/users', { tenant => $tenant, upn => $upn,
		display_name => $o{display_name} // $upn });
}

# connect_url → authorize as upn → (state, code) from the redirect.
sub authorize
{
	my ($self, $user, $upn) = @_;
	$self->sim('POST', '/_sim/authorize_as', { upn => $upn });
	my $url = $self->as_user($user, 'SELECT m365sync.connect_url()');
	my $q = $self->browse($url);
	return ($q->{state}, $q->{code}, $url, $q);
}

# The whole user connect flow; returns account_id.
sub connect_user
{
	my ($self, $user, $upn) = @_;
	my ($state, $code) = $self->authorize($user, $upn);
	croak "authorize gave no code" unless defined $code;
	return $self->as_user($user, "SELECT m365sync.connect_complete('$state', '$code')");
}

# Admin consent for a tenant through the simulator's adminconsent page.
sub admin_consent
{
	my ($self, $tenant) = @_;
	my $url = $self->as_admin("SELECT m365sync.admin_consent_url('$tenant')");
	my $q = $self->browse($url);
	my $err = defined $q->{error} ? "'$q->{error}'" : 'NULL';
	my $granted = ($q->{admin_consent} // '') eq 'True' ? 'true' : 'false';
	my $tid = defined $q->{tenant} ? "'$q->{tenant}'" : 'NULL';
	$self->as_admin("SELECT m365sync.admin_consent_complete('$q->{state}', $tid, $granted, $err)");
	return $q;
}

# Start test/lib/webhook_receiver.py, FlowAgent's webhook handler in small:
# HTTPS with a certificate of the test CA (which the simulator trusts),
# handing every POST to m365sync.handle_notification as role flowagent over
# one session. Returns its base URL; its JSON-lines log is receiver_log().
sub start_receiver
{
	my ($self, %o) = @_;
	my $log = $o{log} // "$self->{dir}/receiver.log";
	my ($out, $err) = ('', '');
	my @cmd = ('python3', src_dir() . '/lib/webhook_receiver.py', '--port', '0',
		'--cert', "$self->{certs}/server.crt", '--key', "$self->{certs}/server.key",
		'--dbname', $self->{node}->connstr($self->{db}), '--role', $o{role} // 'flowagent',
		'--psql', $self->{node}->installed_command('psql'), '--log', $log);
	my $h = IPC::Run::start(\@cmd, '>', \$out, '2>', \$err);
	my $deadline = time + 30;
	while ($out !~ m{receiver listening on (https://127\.0\.0\.1:\d+)} && time < $deadline)
	{
		$h->pump_nb;
		select(undef, undef, undef, 0.05);
	}
	croak "webhook receiver did not start: $err" unless $out =~ m{receiver listening on (https://127\.0\.0\.1:\d+)};
	push @{ $self->{sims} }, $h;
	$self->{receiver_log} = $log;
	return $1;
}

# The receiver's requests so far: a list of hashes (kind, sqlstate, ms, ...).
sub receiver_log
{
	my ($self) = @_;
	open my $fh, '<', $self->{receiver_log} or return [];
	my @e = map { $json->decode($_) } grep { /\S/ } <$fh>;
	close $fh;
	return \@e;
}

# kill -9 the postmaster and start it again. Orphaned children must exit
# before a new postmaster may start; a failed start leaves the old pid file
# behind, so forget it each time.
sub kill9_postmaster_and_restart
{
	my ($self) = @_;
	my $node = $self->{node};
	my $postmaster = $node->{_pid};
	$node->kill9;
	Time::HiRes::usleep(50_000) while kill(0, $postmaster);
	my $started = 0;
	for (1 .. 60)
	{
		$node->{_pid} = undef;
		last if ($started = $node->start(fail_ok => 1));
		sleep 1;
	}
	die 'postmaster did not restart' unless $started;
}

# ------------------------------------------------------------ Citus

# postgresql.conf lines of every node of a Citus test cluster (TAP 090, 091).
sub citus_conf
{
	return <<'CONF';
shared_preload_libraries = 'citus,m365sync'
listen_addresses = '127.0.0.1'
max_prepared_transactions = 100
max_worker_processes = 32
wal_level = logical
max_wal_senders = 10
max_replication_slots = 10
restart_after_crash = on
citus.shard_count = 8
m365sync.sync_interval = '10s'
m365sync.http_timeout = '5s'
CONF
}

# A Citus cluster (issue 19): this test's node is the coordinator, plus
# worker nodes w1..wN (workers => N, default 2) with the same master key,
# each with citus and m365sync preloaded (citus_conf, then conf => "...").
# Citus is created on every node, the workers are added, m365sync is
# created on the coordinator (Citus creates it on the workers) with the
# test roles flowagent, dba and privacy. Not distributed yet: the caller
# runs setup_app and m365sync.distribute(). $t->workers are the worker
# nodes, $t->citus_nodes the coordinator and the workers.
sub citus
{
	my ($class, %o) = @_;
	my $conf = citus_conf() . ($o{conf} // '');
	my $t = $class->new(name => $o{name} // 'coord', extension => 0, conf => $conf,
		sim_args => $o{sim_args}, seed => $o{seed});
	my $coord = $t->node;
	open my $kf, '<', $t->keyfile or croak $!;
	my @keys = map { chomp; $_ } grep { /\S/ } <$kf>;
	close $kf;
	for my $i (1 .. ($o{workers} // 2))
	{
		my $keyfile = "$t->{dir}/w$i.key";
		$t->write_key_file($keyfile, @keys);    # the key file on every node
		push @{ $t->{workers} }, $t->cluster("w$i", 'postgres', $keyfile, conf => $conf);
	}
	$_->safe_psql('postgres', 'CREATE EXTENSION citus') for $t->citus_nodes;
	$coord->safe_psql('postgres', "SELECT citus_set_coordinator_host('127.0.0.1', " . $coord->port . ')');
	$coord->safe_psql('postgres', "SELECT citus_add_node('127.0.0.1', " . $_->port . ')') for $t->workers;
	$coord->safe_psql('postgres', 'CREATE EXTENSION m365sync');
	$coord->safe_psql('postgres', 'CREATE ROLE flowagent LOGIN IN ROLE m365sync_app;'
		  . ' CREATE ROLE dba LOGIN IN ROLE m365sync_admin; CREATE ROLE privacy LOGIN IN ROLE m365sync_privacy');
	return $t;
}

sub workers { @{ $_[0]->{workers} || [] } }
sub citus_nodes { ($_[0]->{node}, $_[0]->workers) }

# The node group of each node: { group id => node } (the coordinator is 0).
sub citus_groups
{
	my ($self) = @_;
	my %g = (0 => $self->{node});
	$g{ $_->safe_psql('postgres', 'SELECT groupid FROM pg_dist_local_group') } = $_ for $self->workers;
	return \%g;
}

# Where each account's rows are: { account_id => node group } for the given ids.
sub citus_placement
{
	my ($self, @accounts) = @_;
	my $out = $self->{node}->safe_psql('postgres',
		'SELECT a, p.groupid FROM unnest(ARRAY[' . join(',', @accounts) . ']::bigint[]) a'
		  . " JOIN pg_dist_placement p ON p.shardid = get_shard_id_for_distribution_column('m365sync.accounts', a)");
	return { map { split /\|/ } split /\n/, $out };
}

# The shard of m365sync.accounts holding an account.
sub citus_shard_of
{
	my ($self, $account) = @_;
	return scalar $self->{node}->safe_psql('postgres',
		"SELECT get_shard_id_for_distribution_column('m365sync.accounts', $account)");
}

# ------------------------------------------------------------ a ledger of edits

# SQL on a node (default: this test's node) as the FlowAgent app acting for
# a user, in one transaction: (ok, stdout, sqlstate; 'no server' when the
# node did not answer).
sub fa_on
{
	my ($self, $node, $user, $sql) = @_;
	my ($out, $err) = ('', '');
	$user =~ s/'/''/g;
	($node // $self->{node})->psql($self->{db}, "BEGIN;\nSET LOCAL m365sync.flowagent_user = '$user';\n$sql;\nCOMMIT;",
		stdout => \$out, stderr => \$err, on_error_stop => 1,
		extra_params => [ '-U', 'flowagent', '-v', 'VERBOSITY=verbose' ]);
	return (0, $out, $1) if $err =~ /ERROR:\s+([0-9A-Z]{5}):/;
	return (0, $out, 'no server') if $err =~ /FATAL|could not connect|terminat/;
	return (1, $out, '');
}

# The ledger: events made in the simulator (Outlook) and through
# m365sync (FlowAgent) for mailboxes "account id => simulator user id"
# (ledger_mailbox), each with a subject starting with the ledger's marker,
# then compared with both sides: 0 lost, 0 duplicated, nothing unexpected.
# A mailbox's FlowAgent user is "fa-<account id>".
sub ledger_marker
{
	my ($self) = @_;
	return $self->{ledger}{marker} //= 'led' . random_hex(6);
}

sub ledger_mailbox { my ($self, $acc, $sim_user) = @_; $self->{ledger}{mbx}{$acc} = $sim_user; }

sub _ledger_event
{
	my ($self) = @_;
	my $n = ++$self->{ledger}{n};
	my @t = gmtime(time + 86400 * (1 + int(rand(10))));
	my $h = 7 + int(rand(10));
	my $d = sprintf('%04d-%02d-%02d', $t[5] + 1900, $t[4] + 1, $t[3]);
	my $m = $self->ledger_marker;
	return { subject => "$m e$n", body => { contentType => 'text', content => "$m body $n" },
		start => { dateTime => sprintf('%sT%02d:00:00', $d, $h), timeZone => 'UTC' },
		end => { dateTime => sprintf('%sT%02d:30:00', $d, $h), timeZone => 'UTC' } };
}

# A FlowAgent create through the node (default: this test's), retried while a node is down.
sub ledger_fa_create
{
	my ($self, $acc, %o) = @_;
	my $e = $self->_ledger_event;
	my $doc = $json->encode($e);
	$doc =~ s/'/''/g;
	for (1 .. ($o{tries} // 300))
	{
		my ($ok, $out, $st) = $self->fa_on($o{node}, "fa-$acc", "SELECT m365sync.upsert_event('$doc'::jsonb)");
		if ($ok) { $self->{ledger}{expect}{$acc}{ $e->{subject} } = 1; return $out; }
		croak "upsert_event: $st" if $st =~ /^(22|42|28)/;
		Time::HiRes::usleep(200_000);
	}
	croak "upsert_event kept failing for account $acc";
}

# An Outlook create in the simulator.
sub ledger_ol_create
{
	my ($self, $acc) = @_;
	my $e = $self->_ledger_event;
	$self->sim('POST', "/_sim/users/$self->{ledger}{mbx}{$acc}/events", $e);
	$self->{ledger}{expect}{$acc}{ $e->{subject} } = 1;
}

sub ledger_remote
{
	my ($self, $acc) = @_;
	my $m = $self->ledger_marker;
	my $tr = $self->sim('GET', "/_sim/users/$self->{ledger}{mbx}{$acc}/truth?idtype=immutable&tz=UTC&body=text");
	my %n;
	$n{ $_->{subject} }++ for grep { ($_->{subject} // '') =~ /^\Q$m\E/ } @{ $tr->{events} };
	return \%n;
}

# What events() shows the account's user on a node (default: this test's); undef: unreadable.
sub ledger_local
{
	my ($self, $acc, $node) = @_;
	my $m = $self->ledger_marker;
	my ($ok, $out) = $self->fa_on($node, "fa-$acc",
		"SELECT coalesce(json_agg(subject), '[]') FROM m365sync.events(now() - interval '30 days', now() + interval '400 days')");
	return undef unless $ok;
	my %n;
	$n{$_}++ for grep { /^\Q$m\E/ } @{ $json->decode($out) };
	return \%n;
}

# Lost: an expected subject missing on either side; duplicated: one held
# twice on either side; extra: one on a side that nobody made.
sub ledger_tally
{
	my ($self, @accs) = @_;
	my %r = (lost => 0, dup => 0, extra => 0, unreadable => 0);
	for my $acc (@accs)
	{
		my $loc = $self->ledger_local($acc);
		if (!$loc) { $r{unreadable}++; next; }
		my $exp = $self->{ledger}{expect}{$acc} || {};
		for my $side ($self->ledger_remote($acc), $loc)
		{
			$r{lost} += grep { !$side->{$_} } keys %$exp;
			$r{dup} += grep { $side->{$_} > 1 } keys %$side;
			$r{extra} += grep { !$exp->{$_} } keys %$side;
		}
	}
	return \%r;
}

# Wait (up to 2 minutes) until both sides agree with the ledger; three checks.
sub ledger_settle
{
	my ($self, $what, @accs) = @_;
	my $r;
	for (1 .. 120)
	{
		$r = $self->ledger_tally(@accs);
		last if !$r->{lost} && !$r->{dup} && !$r->{extra} && !$r->{unreadable};
		sleep 1;
	}
	is($r->{lost}, 0, "$what: 0 lost");
	is($r->{dup}, 0, "$what: 0 duplicated");
	is($r->{extra} + $r->{unreadable}, 0, "$what: nothing unexpected, every mailbox readable");
}

sub DESTROY
{
	my ($self) = @_;
	# reaping the simulator must not change the test's exit status, which
	# perl takes from $? after global destruction
	local $?;
	for my $h (@{ $self->{sims} || [] })
	{
		eval { $h->kill_kill; };
	}
}

1;
