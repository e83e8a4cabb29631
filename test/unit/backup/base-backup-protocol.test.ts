import {describe, expect, it} from 'vitest';
import {baseBackupCommand, parseNewArchive} from '../../../src/backup/base-backup-protocol.js';

describe('BASE_BACKUP over the replication protocol', () => {
  it('builds the PostgreSQL 15 command, quoting the label, without TABLESPACE_MAP', () => {
    expect(baseBackupCommand("pgbk 20260101T000000Z", 'fast')).toBe("BASE_BACKUP (LABEL 'pgbk 20260101T000000Z', CHECKPOINT 'fast', MANIFEST 'yes', TABLESPACE_MAP false)");
    expect(baseBackupCommand("it's", 'spread')).toContain("LABEL 'it''s', CHECKPOINT 'spread'");
  });

  it('reads a new-archive message: name and tablespace path', () => {
    expect(parseNewArchive(Buffer.from('16385.tar\0/srv/fast\0'))).toEqual({name: '16385.tar', tablespacePath: '/srv/fast'});
    expect(parseNewArchive(Buffer.from('base.tar\0\0'))).toEqual({name: 'base.tar', tablespacePath: ''});
    expect(() => parseNewArchive(Buffer.from('base.tar'))).toThrow(/malformed new-archive message/);
    expect(() => parseNewArchive(Buffer.from('base.tar\0'))).toThrow(/malformed/);
  });
});
