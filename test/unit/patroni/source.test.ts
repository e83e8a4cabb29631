import {describe, expect, it} from 'vitest';
import {parseCluster, memberApiBase, fetchCluster, fetchNode, healthCheck, restOptionsFor, describeRequestError, type PatroniCluster} from '../../../src/patroni/rest.js';
import {chooseBackupMember, memberSystemRefusal, replicaCandidates, urlForMember, resolvePatroniSource} from '../../../src/patroni/source.js';
import {parsePolicy} from '../../../src/policy/load.js';

// GET /cluster as Patroni 3.0.2 answers it (utils.cluster_as_json).
const CLUSTER_BODY = {
  members: [
    {name: 'pg1', role: 'leader', state: 'running', api_url: 'http://10.0.0.11:8008/patroni', host: '10.0.0.11', port: 5432, timeline: 3},
    {name: 'pg2', role: 'replica', state: 'running', api_url: 'http://10.0.0.12:8008/patroni', host: '10.0.0.12', port: 5432, timeline: 3, lag: 2048},
    {name: 'pg3', role: 'sync_standby', state: 'streaming', api_url: 'http://10.0.0.13:8008/patroni', host: '10.0.0.13', port: 5433, timeline: 3, lag: 0},
    {name: 'pg4', role: 'replica', state: 'starting', api_url: 'http://10.0.0.14:8008/patroni', host: '10.0.0.14', port: 5432, lag: 'unknown'},
  ],
};

const cluster = (): PatroniCluster => parseCluster(CLUSTER_BODY, 'http://10.0.0.11:8008');

describe('GET /cluster', () => {
  it('parses members, roles, lag (unknown → null) and the REST API base', () => {
    const parsed = cluster();
    expect(parsed.members.map((m) => [m.name, m.role, m.state, m.lagBytes])).toEqual([
      ['pg1', 'leader', 'running', undefined], ['pg2', 'replica', 'running', 2048], ['pg3', 'sync_standby', 'streaming', 0], ['pg4', 'replica', 'starting', null],
    ]);
    expect(parsed.members[2]).toMatchObject({host: '10.0.0.13', port: 5433, timeline: 3});
    expect(memberApiBase(parsed.members[1]!)).toBe('http://10.0.0.12:8008');
    expect(parsed.paused).toBe(false);
    expect(parseCluster({...CLUSTER_BODY, pause: true}, 'x').paused).toBe(true);
  });

  it('refuses an answer without a member list', () => {
    expect(() => parseCluster({error: 'x'}, 'http://h:8008')).toThrow(/http:\/\/h:8008\/cluster answered without a member list/);
  });
});

describe('choosing the backup source', () => {
  it('lists running/streaming replicas within the lag, least lag first', () => {
    expect(replicaCandidates(cluster(), 1_048_576).map((m) => m.name)).toEqual(['pg3', 'pg2']);
    expect(replicaCandidates(cluster(), 1024).map((m) => m.name)).toEqual(['pg3']);
  });

  it('takes a healthy replica, else the leader, and says why', () => {
    const replica = chooseBackupMember(cluster(), 1_048_576, new Set(['pg2', 'pg3']));
    expect(replica).toMatchObject({role: 'replica', member: {name: 'pg3'}, leader: {name: 'pg1'}});
    expect(chooseBackupMember(cluster(), 1_048_576, new Set(['pg2'])).member.name).toBe('pg2');
    const leader = chooseBackupMember(cluster(), 1_048_576, new Set());
    expect(leader).toMatchObject({role: 'leader', member: {name: 'pg1'}});
    expect(leader.reason).toMatch(/no healthy replica within 1048576 bytes .*pg4 starting, lag unknown, GET \/replica not 200.*backing up from the leader pg1/);
    const lagging = chooseBackupMember(cluster(), 100, new Set(['pg2']));
    expect(lagging.role).toBe('leader');
  });

  it('has no source without a leader', () => {
    const noLeader = parseCluster({members: CLUSTER_BODY.members.slice(1)}, 'http://h:8008');
    expect(() => chooseBackupMember(noLeader, 1_048_576, new Set(['pg2']))).toThrow(/the Patroni cluster has no leader/);
  });
});

describe('urlForMember', () => {
  const member = {name: 'pg2', host: '10.0.0.12', port: 5433};
  it.each([
    ['postgresql://backup:s3cret@haproxy.internal:5000/app?sslmode=require', 'postgresql://backup:s3cret@10.0.0.12:5433/app?sslmode=require'],
    ['postgres://postgres@127.0.0.1/postgres', 'postgres://postgres@10.0.0.12:5433/postgres'],
    ['postgresql://haproxy:5000', 'postgresql://10.0.0.12:5433'],
    ['postgresql://u@h1:5432,h2:5432/db', 'postgresql://u@10.0.0.12:5433/db'],
  ])('%s → %s', (url, expected) => {
    expect(urlForMember(url, member)).toBe(expected);
  });
  it('brackets IPv6 hosts', () => {
    expect(urlForMember('postgresql://u@[::1]:5432/db', {name: 'x', host: 'fd00::12', port: 5432})).toBe('postgresql://u@[fd00::12]:5432/db');
  });
  it('needs a host and port', () => {
    expect(() => urlForMember('postgresql://u@h/db', {name: 'pg9'})).toThrow(/no host and port for member pg9/);
  });
});

describe('the REST API over HTTP (a fake fetch)', () => {
  const answers: Record<string, {status: number; body?: unknown} | Error> = {};
  const calls: string[] = [];
  const fakeFetch = (async (url: string) => {
    calls.push(url);
    const answer = answers[url];
    if (!answer) throw Object.assign(new TypeError('fetch failed'), {cause: {code: 'ECONNREFUSED'}});
    if (answer instanceof Error) throw answer;
    return new Response(answer.body === undefined ? '' : JSON.stringify(answer.body), {status: answer.status});
  }) as unknown as typeof fetch;

  it('asks each REST API in turn until one answers /cluster, naming the ones that did not', async () => {
    answers['http://b:8008/cluster'] = {status: 200, body: CLUSTER_BODY};
    const found = await fetchCluster(['http://a:8008', 'http://b:8008'], {fetch: fakeFetch});
    expect(found.source).toBe('http://b:8008');
    await expect(fetchCluster(['http://a:8008', 'http://c:8008'], {fetch: fakeFetch}))
      .rejects.toThrow('no Patroni REST API answered GET /cluster: GET http://a:8008/cluster: ECONNREFUSED; GET http://c:8008/cluster: ECONNREFUSED');
  });

  it('reports a timeout as such', async () => {
    answers['http://slow:8008/cluster'] = Object.assign(new Error('aborted'), {name: 'TimeoutError'});
    await expect(fetchCluster(['http://slow:8008'], {fetch: fakeFetch, timeoutMs: 1500})).rejects.toThrow(/no answer within 1.5s/);
  });

  it('health: 200 is healthy; 503 and no answer are not; the lag goes in the query', async () => {
    answers['http://r:8008/replica?lag=1024'] = {status: 200, body: {role: 'replica'}};
    answers['http://p:8008/primary'] = {status: 503, body: {role: 'replica'}};
    expect(await healthCheck('http://r:8008', 'replica', {fetch: fakeFetch, lagBytes: 1024})).toBe(true);
    expect(await healthCheck('http://p:8008', 'primary', {fetch: fakeFetch})).toBe(false);
    expect(await healthCheck('http://gone:8008', 'primary', {fetch: fakeFetch})).toBe(false);
  });

  it('resolvePatroniSource: the best replica that answers GET /replica, with the policy URL pointed at it and at the leader', async () => {
    answers['http://10.0.0.11:8008/cluster'] = {status: 200, body: CLUSTER_BODY};
    answers['http://10.0.0.13:8008/replica?lag=1048576'] = {status: 503};
    answers['http://10.0.0.12:8008/replica?lag=1048576'] = {status: 200};
    answers['http://10.0.0.11:8008/patroni'] = {status: 200, body: {state: 'running', role: 'master', database_system_identifier: '7300000000000000001', patroni: {scope: 'demo'}}};
    answers['http://10.0.0.12:8008/patroni'] = {status: 200, body: {state: 'running', role: 'replica', database_system_identifier: '7300000000000000001', patroni: {scope: 'demo'}}};
    const policy = parsePolicy([
      'strategy: patroni',
      'postgres:',
      '  url: postgresql://backup:pw@haproxy:5000/app',
      'repository:',
      '  url: file:///var/backups/pgbk',
      'patroni:',
      '  rest_api: [http://10.0.0.11:8008/]',
    ].join('\n'), '/etc/pgbk/policies/app.yaml', {});
    expect(policy.patroni).toEqual({restApi: ['http://10.0.0.11:8008'], maximumLagOnFailover: 1_048_576, insecure: false});
    const source = await resolvePatroniSource(policy, {fetch: fakeFetch});
    expect(source).toMatchObject({
      role: 'replica', member: 'pg2', leader: 'pg1',
      url: 'postgresql://backup:pw@10.0.0.12:5432/app', leaderUrl: 'postgresql://backup:pw@10.0.0.11:5432/app',
    });
  });

  it('resolvePatroniSource: a replica of another database system is refused, naming it and both identifiers; the leader is checked against the repository', async () => {
    answers['http://10.0.0.11:8008/cluster'] = {status: 200, body: CLUSTER_BODY};
    answers['http://10.0.0.13:8008/replica?lag=1048576'] = {status: 503};
    answers['http://10.0.0.12:8008/replica?lag=1048576'] = {status: 200};
    answers['http://10.0.0.11:8008/patroni'] = {status: 200, body: {database_system_identifier: '7300000000000000001'}};
    answers['http://10.0.0.12:8008/patroni'] = {status: 200, body: {database_system_identifier: '7399999999999999999'}};
    const policy = parsePolicy('strategy: patroni\npostgres:\n  url: postgresql://b@haproxy:5000/app\nrepository:\n  url: file:///r\npatroni:\n  rest_api: [http://10.0.0.11:8008]\n', '/p/app.yaml', {});
    const source = await resolvePatroniSource(policy, {fetch: fakeFetch}, '7300000000000000001');
    expect(source).toMatchObject({role: 'leader', member: 'pg1'});
    expect(source.refused).toHaveLength(1);
    expect(source.refused[0]).toMatch(/^Patroni member pg2 \(http:\/\/10\.0\.0\.12:8008\/patroni\) reports database system 7399999999999999999, but the repository is database system 7300000000000000001: refused as backup source\. .*patronictl reinit/);
    expect(source.reason).toMatch(/pg2 running, lag 2048, refused: database system identifier/);
    // The same replica with the repository's identifier is taken.
    answers['http://10.0.0.12:8008/patroni'] = {status: 200, body: {database_system_identifier: '7300000000000000001'}};
    expect(await resolvePatroniSource(policy, {fetch: fakeFetch}, '7300000000000000001')).toMatchObject({role: 'replica', member: 'pg2', refused: []});
    // A leader of another system: nothing of that cluster is this repository's (exit 2).
    await expect(resolvePatroniSource(policy, {fetch: fakeFetch}, '7211111111111111111')).rejects.toMatchObject({
      exitCode: 2, message: expect.stringMatching(/the Patroni leader pg1 \(http:\/\/10\.0\.0\.11:8008\/patroni\) reports database system 7300000000000000001, but the repository of policy app belongs to database system 7211111111111111111/),
    });
  });

  it('memberSystemRefusal: same system trusted; none reported is not trusted either', () => {
    const expected = {systemId: '1', of: 'the repository'};
    expect(memberSystemRefusal({name: 'a'}, 'http://a:8008', '1', expected)).toBeUndefined();
    expect(memberSystemRefusal({name: 'a'}, 'http://a:8008', undefined, expected)).toMatch(/^Patroni member a \(http:\/\/a:8008\/patroni\) reports no database_system_identifier/);
  });

  it('sends basic auth; a 401 names the keys, never the password', async () => {
    const seen: Array<string | null> = [];
    const authFetch = (async (_url: string, init: RequestInit) => {
      const header = new Headers(init.headers).get('authorization');
      seen.push(header);
      const ok = header === `Basic ${Buffer.from('pgbk:s3cret-pw').toString('base64')}`;
      return new Response(ok ? JSON.stringify({database_system_identifier: 42}) : 'not authenticated', {status: ok ? 200 : 401});
    }) as unknown as typeof fetch;
    expect(await fetchNode('https://a:8008', {...restOptionsFor({insecure: false, username: 'pgbk', password: 's3cret-pw'}), fetch: authFetch})).toEqual({systemId: '42'});
    const wrong = fetchCluster(['https://a:8008'], {...restOptionsFor({insecure: false, username: 'pgbk', password: 'wrong-pw'}), fetch: authFetch});
    await expect(wrong).rejects.toThrow(/https:\/\/a:8008\/cluster answered 401 Unauthorized: patroni\.username\/patroni\.password were refused/);
    const error = await wrong.catch((e: Error) => e);
    expect(`${error.message} ${(error as {hint?: string}).hint ?? ''}`).not.toMatch(/wrong-pw/);
    await expect(fetchCluster(['https://a:8008'], {fetch: authFetch})).rejects.toThrow(/answered 401 Unauthorized: it asks for credentials: set patroni\.username and patroni\.password/);
    expect(seen.at(-1)).toBeNull();
  });

  it('an unreadable ca_file is bad input (exit 2); certificate errors name the key that fixes them', () => {
    expect(() => restOptionsFor({insecure: false, caFile: '/nonexistent/ca.pem'})).toThrow(expect.objectContaining({exitCode: 2, message: expect.stringMatching(/patroni\.ca_file \/nonexistent\/ca\.pem: cannot read it \(ENOENT\)/)}));
    expect(restOptionsFor({insecure: true}).agent?.options.rejectUnauthorized).toBe(false);
    expect(restOptionsFor({insecure: false}).agent).toBeUndefined();
    expect(describeRequestError(Object.assign(new Error('self-signed certificate'), {code: 'DEPTH_ZERO_SELF_SIGNED_CERT'})))
      .toMatch(/TLS certificate is not trusted \(DEPTH_ZERO_SELF_SIGNED_CERT\): set patroni\.ca_file/);
  });

  it('resolvePatroniSource without patroni.rest_api is a policy error', async () => {
    const policy = parsePolicy('strategy: patroni\npostgres:\n  url: postgresql://h/db\nrepository:\n  url: file:///r\n', '/p/x.yaml', {});
    await expect(resolvePatroniSource(policy, {fetch: fakeFetch})).rejects.toMatchObject({exitCode: 2, message: expect.stringMatching(/patroni.rest_api is not set/)});
  });
});

describe('policy: the patroni section', () => {
  const base = 'strategy: patroni\npostgres:\n  url: postgresql://h/db\nrepository:\n  url: file:///r\n';
  it('rejects a REST API that is not an http URL, naming the key and line', () => {
    expect(() => parsePolicy(`${base}patroni:\n  rest_api: [10.0.0.1:8008]\n`, '/p/x.yaml', {})).toThrow(/\/p\/x\.yaml:7: patroni\.rest_api\.0: expected a REST API base URL/);
  });
  it('takes https URLs, ca_file, insecure and basic auth; refuses half the credentials, credentials in a URL and a relative ca_file', () => {
    const policy = parsePolicy(`${base}patroni:\n  rest_api: [https://a:8008]\n  ca_file: /etc/pgbk/ca.pem\n  username: pgbk\n  password: \${PGBK_PATRONI_PASSWORD}\n`, '/p/x.yaml', {PGBK_PATRONI_PASSWORD: 'pw'});
    expect(policy.patroni).toEqual({restApi: ['https://a:8008'], maximumLagOnFailover: 1_048_576, insecure: false, caFile: '/etc/pgbk/ca.pem', username: 'pgbk', password: 'pw'});
    expect(parsePolicy(`${base}patroni:\n  rest_api: [https://a:8008]\n  insecure: true\n`, '/p/x.yaml', {}).patroni?.insecure).toBe(true);
    expect(() => parsePolicy(`${base}patroni:\n  rest_api: [https://a:8008]\n  username: pgbk\n`, '/p/x.yaml', {})).toThrow(/x\.yaml:\d+: patroni\.password: give patroni\.username and patroni\.password together/);
    expect(() => parsePolicy(`${base}patroni:\n  rest_api: [https://u:pw@a:8008]\n`, '/p/x.yaml', {})).toThrow(/patroni\.rest_api\.0: no credentials in the URL/);
    expect(() => parsePolicy(`${base}patroni:\n  rest_api: [https://a:8008]\n  ca_file: ca.pem\n`, '/p/x.yaml', {})).toThrow(/patroni\.ca_file: expected an absolute path/);
  });
  it('takes maximum_lag_on_failover in bytes', () => {
    expect(parsePolicy(`${base}patroni:\n  rest_api: [http://a:8008]\n  maximum_lag_on_failover: 0\n`, '/p/x.yaml', {}).patroni?.maximumLagOnFailover).toBe(0);
    expect(() => parsePolicy(`${base}patroni:\n  rest_api: [http://a:8008]\n  maximum_lag_on_failover: 1MB\n`, '/p/x.yaml', {})).toThrow(/maximum_lag_on_failover/);
  });
});
