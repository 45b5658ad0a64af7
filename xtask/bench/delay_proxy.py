"""A TCP proxy that slows every response down: `cargo xtask bench --ses-outage` puts it between
Sesame's SES client and the local AWS emulator to play a slow provider.

    python delay_proxy.py <listen port> <upstream host:port> <delay ms>

Each time the upstream starts answering after the client has sent something (a new request on a
keep-alive connection), the proxy waits <delay ms> before passing the answer on, so every
request/response exchange takes <delay ms> longer. Everything else is forwarded as it comes.
Only the standard library; it runs until it is killed.
"""

import asyncio
import sys


async def main(port: int, upstream: str, delay: float) -> None:
    host, _, up_port = upstream.rpartition(":")

    async def handle(client_reader: asyncio.StreamReader, client_writer: asyncio.StreamWriter) -> None:
        try:
            up_reader, up_writer = await asyncio.open_connection(host, int(up_port))
        except OSError:
            client_writer.close()
            return
        # Set when the client sends: the next bytes from upstream start an answer.
        answer_due = asyncio.Event()

        async def to_upstream() -> None:
            try:
                while data := await client_reader.read(65536):
                    answer_due.set()
                    up_writer.write(data)
                    await up_writer.drain()
            except OSError:
                pass
            finally:
                up_writer.close()

        async def to_client() -> None:
            try:
                while data := await up_reader.read(65536):
                    if answer_due.is_set():
                        answer_due.clear()
                        await asyncio.sleep(delay)
                    client_writer.write(data)
                    await client_writer.drain()
            except OSError:
                pass
            finally:
                client_writer.close()

        await asyncio.gather(to_upstream(), to_client())

    server = await asyncio.start_server(handle, "127.0.0.1", port, backlog=1024)
    print("ready", flush=True)
    async with server:
        await server.serve_forever()


if __name__ == "__main__":
    if len(sys.argv) != 4:
        sys.exit(__doc__)
    asyncio.run(main(int(sys.argv[1]), sys.argv[2], float(sys.argv[3]) / 1000.0))
