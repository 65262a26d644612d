import { expect } from 'chai';
import { createHash, randomBytes } from 'node:crypto';
import { ResumableSha256 } from '../../core/oci/resumable-sha256.js';

const reference = (b: Buffer) => createHash('sha256').update(b).digest('hex');

describe('resumable SHA-256 (hash state carried between upload chunks)', () => {
  it('when fed known vectors, then it gives the FIPS 180-4 digests', () => {
    expect(new ResumableSha256().hex()).to.equal('e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855');
    expect(new ResumableSha256().update(Buffer.from('abc')).hex()).to.equal('ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad');
  });

  it('when data of every length around block edges is hashed, then it matches node:crypto', () => {
    for (let n = 0; n < 300; n++) {
      const data = randomBytes(n);
      expect(new ResumableSha256().update(data).hex(), `length ${n}`).to.equal(reference(data));
    }
  });

  it('when the state is saved and restored between arbitrary chunks, then the digest is unchanged', () => {
    for (let trial = 0; trial < 50; trial++) {
      const data = randomBytes(1 + Math.floor(Math.random() * 5000));
      let h = new ResumableSha256();
      let at = 0;
      while (at < data.length) {
        const step = Math.min(data.length - at, 1 + Math.floor(Math.random() * 700));
        h.update(data.subarray(at, at + step));
        at += step;
        h = ResumableSha256.restore(h.save());
      }
      expect(h.bytes).to.equal(data.length);
      expect(h.hex()).to.equal(reference(data));
    }
  });

  it('when a saved state is truncated, then restoring it fails instead of hashing garbage', () => {
    const state = new ResumableSha256().update(randomBytes(100)).save();
    expect(() => ResumableSha256.restore(state.subarray(0, state.length - 1))).to.throw(/corrupt/);
  });
});
