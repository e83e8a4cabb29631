import {describe, expect, it} from 'vitest';
import {redactSecrets, redactUrl, splitPassword, withDatabase} from '../../../src/pg/conninfo.js';

const PASSWORD = 'Zq9-secret';

describe('splitPassword', () => {
  it.each([
    [`postgresql://postgres:${PASSWORD}@127.0.0.1:5432/orders`, 'postgresql://postgres@127.0.0.1:5432/orders', PASSWORD],
    [`postgres://app:${PASSWORD}@db.internal/orders?sslmode=require`, 'postgres://app@db.internal/orders?sslmode=require', PASSWORD],
    [`postgresql://app:${encodeURIComponent('p@ss:w/rd%')}@h:5433/d`, 'postgresql://app@h:5433/d', 'p@ss:w/rd%'],
    [`postgresql://:${PASSWORD}@h/d`, 'postgresql://h/d', PASSWORD],
  ])('%s → %s with PGPASSWORD', (url, withoutPassword, password) => {
    const split = splitPassword(url);
    expect(split.url).toBe(withoutPassword);
    expect(split.password).toBe(password);
    expect(split.env).toEqual({PGPASSWORD: password});
    expect(split.url).not.toContain(password);
    expect(split.url).not.toContain(encodeURIComponent(password));
  });

  it('leaves a URL without a password alone', () => {
    expect(splitPassword('postgresql://postgres@127.0.0.1:5432/orders')).toEqual({url: 'postgresql://postgres@127.0.0.1:5432/orders', env: {}, password: undefined});
  });

  it('moves a password given as a query parameter into the environment', () => {
    const split = splitPassword(`postgresql://app@h:5432/d?sslmode=require&password=${PASSWORD}&application_name=a%20b`);
    expect(split.url).not.toContain(PASSWORD);
    expect(split.url).toBe('postgresql://app@h:5432/d?sslmode=require&application_name=a%20b');
    expect(split.env).toEqual({PGPASSWORD: PASSWORD});
  });

  it('never keeps the password of a multi-host URL in the result', () => {
    const split = splitPassword(`postgresql://app:${PASSWORD}@h1:5432,h2:5432/d?target_session_attrs=read-write`);
    expect(split.url).not.toContain(PASSWORD);
    expect(split.url).toBe('postgresql://app@h1:5432,h2:5432/d?target_session_attrs=read-write');
    expect(split.env).toEqual({PGPASSWORD: PASSWORD});
  });

  it('leaves multi-host URLs without a password alone', () => {
    for (const url of ['postgresql://app@h1:5432,h2:5432/d', 'postgresql://h1:5432,h2:5432/d?user=a@b', 'postgresql://h1,h2/d?sslmode=require']) {
      expect(splitPassword(url)).toEqual({url, env: {}, password: undefined});
    }
  });

  it('takes the only parameter when it is the password, and decodes it', () => {
    expect(splitPassword('postgresql://h/d?password=a%26b')).toEqual({url: 'postgresql://h/d', env: {PGPASSWORD: 'a&b'}, password: 'a&b'});
  });

  it('keeps a malformed percent escape as written rather than failing', () => {
    const split = splitPassword('postgresql://app:50%zz@h1:1,h2:2/d');
    expect(split.url).toBe('postgresql://app@h1:1,h2:2/d');
    expect(split.password).toBe('50%zz');
  });
});

describe('redactUrl', () => {
  it.each([
    [`postgresql://postgres:${PASSWORD}@127.0.0.1:5432/orders`, 'postgresql://postgres:***@127.0.0.1:5432/orders'],
    [`postgresql://:${PASSWORD}@h/d`, 'postgresql://:***@h/d'],
    [`postgresql://app:${PASSWORD}@h1:5432,h2:5432/d`, 'postgresql://app:***@h1:5432,h2:5432/d'],
    [`postgresql://app:a:b/c${PASSWORD}@h/d`, 'postgresql://app:***@h/d'],
    [`postgresql://app@h/d?sslmode=require&password=${PASSWORD}`, 'postgresql://app@h/d?sslmode=require&password=***'],
    [`postgresql://app@h/d?PASSWORD=${PASSWORD}&x=1`, 'postgresql://app@h/d?PASSWORD=***&x=1'],
    [`host=h user=app password=${PASSWORD} dbname=d`, 'host=h user=app password=*** dbname=d'],
  ])('%s → %s', (url, redacted) => {
    expect(redactUrl(url)).toBe(redacted);
    expect(redactUrl(url)).not.toContain(PASSWORD);
  });

  it('leaves URLs without a password unchanged', () => {
    for (const url of ['postgresql://postgres@127.0.0.1:5432/orders', 'postgresql://h:5432/d', 'postgresql:///d?host=/var/run/postgresql']) {
      expect(redactUrl(url)).toBe(url);
    }
  });
});

describe('withDatabase', () => {
  it('replaces the database and keeps the rest', () => {
    expect(withDatabase('postgresql://app@h:5432/orders?sslmode=require', 'scratch db')).toBe('postgresql://app@h:5432/scratch%20db?sslmode=require');
  });
});

describe('key=value conninfo', () => {
  it.each([
    [`host=127.0.0.1 password=${PASSWORD} dbname=orders`, 'host=127.0.0.1 dbname=orders', PASSWORD],
    [`host=h password = '${PASSWORD}' user=app`, 'host=h user=app', PASSWORD],
    ["host=h password='it\\'s a \\\\secret' dbname=d", 'host=h dbname=d', "it's a \\secret"],
    [`password=${PASSWORD}`, '', PASSWORD],
    [`host=h dbname=d PASSWORD=${PASSWORD}`, 'host=h dbname=d', PASSWORD],
  ])('%s → %s with PGPASSWORD', (conninfo, rest, password) => {
    const split = splitPassword(conninfo);
    expect(split.url).toBe(rest);
    expect(split.env).toEqual({PGPASSWORD: password});
    expect(split.url).not.toContain(password);
  });

  it('takes the last password, as libpq does, and removes every one', () => {
    const split = splitPassword('host=h password=first password=second');
    expect(split.env).toEqual({PGPASSWORD: 'second'});
    expect(split.url).toBe('host=h');
  });

  it('leaves key=value without a password alone', () => {
    expect(splitPassword('host=/var/run/postgresql dbname=orders')).toEqual({url: 'host=/var/run/postgresql dbname=orders', env: {}, password: undefined});
  });

  it.each([
    [`host=h password=${PASSWORD} dbname=d`, 'host=h password=*** dbname=d'],
    [`host=h password = '${PASSWORD} x' dbname=d`, "host=h password = *** dbname=d"],
    [`cannot connect to postgresql://u:${PASSWORD}@h/d: refused`, 'cannot connect to postgresql://u:***@h/d: refused'],
    [`postgresql://u@h/d?password=${PASSWORD}&sslmode=require`, 'postgresql://u@h/d?password=***&sslmode=require'],
  ])('redacts %s', (text, shown) => {
    expect(redactSecrets(text)).toBe(shown);
    expect(redactUrl(text)).toBe(shown);
  });
});
