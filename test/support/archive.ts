import { createReadStream } from 'node:fs';
import { pipeline } from 'node:stream/promises';
import tar from 'tar-stream';

/** Every file of a tar, by name, and how often each name occurs. */
export async function readArchive(path: string): Promise<{ files: Map<string, Buffer>; names: string[] }> {
  const files = new Map<string, Buffer>();
  const names: string[] = [];
  const extract = tar.extract();
  extract.on('entry', (header, stream, next) => {
    const chunks: Buffer[] = [];
    stream.on('data', (c: unknown) => {
      chunks.push(c as Buffer);
    });
    stream.on('end', () => {
      names.push(header.name);
      files.set(header.name, Buffer.concat(chunks));
      next();
    });
  });
  await pipeline(createReadStream(path), extract);
  return { files, names };
}

