import {describe, expect, it} from 'vitest';
import {parseLongPageHeader, segmentMismatch} from '../../../src/wal/page-header.js';
import {withPageHeader} from '../../helpers/wal.js';

const SYSTEM = '7312345678901234567';
const owner = {systemId: SYSTEM, walSegmentSize: 16 * 1024 * 1024};

describe('WAL long page header', () => {
  it('reads the system identifier, segment size and page address', () => {
    const head = withPageHeader(Buffer.alloc(64), '00000002000000010000002A', SYSTEM);
    const header = parseLongPageHeader(head)!;
    expect(header.systemId).toBe(SYSTEM);
    expect(header.segmentSize).toBe(16 * 1024 * 1024);
    expect(header.timeline).toBe(2);
    expect(header.pageAddress).toBe(0x12A000000n);
    expect(segmentMismatch(head, '00000002000000010000002A', owner)).toBeUndefined();
  });

  it('names what does not belong: another system, another segment size, another position, no header', () => {
    const name = '000000010000000000000003';
    expect(segmentMismatch(withPageHeader(Buffer.alloc(64), name, '42'), name, owner)).toBe(`${name} belongs to database system 42, the repository to ${SYSTEM}`);
    expect(segmentMismatch(withPageHeader(Buffer.alloc(64), name, SYSTEM, 64 * 1024 * 1024), name, owner)).toMatch(/segment size of 67108864 bytes/);
    expect(segmentMismatch(withPageHeader(Buffer.alloc(64), '000000010000000000000004', SYSTEM), name, owner)).toMatch(/another position/);
    expect(segmentMismatch(Buffer.alloc(64), name, owner)).toMatch(/does not start with a WAL long page header/);
    expect(segmentMismatch(Buffer.alloc(10), name, owner)).toMatch(/does not start with a WAL long page header/);
  });

  it('segment numbers past the first 4 GiB of WAL map to the right page address (64 MiB segments)', () => {
    const big = {systemId: SYSTEM, walSegmentSize: 64 * 1024 * 1024};
    const name = '00000001000000030000003F';
    const head = withPageHeader(Buffer.alloc(64), name, SYSTEM, 64 * 1024 * 1024);
    expect(parseLongPageHeader(head)!.pageAddress).toBe(0x3FC000000n);
    expect(segmentMismatch(head, name, big)).toBeUndefined();
  });
});
