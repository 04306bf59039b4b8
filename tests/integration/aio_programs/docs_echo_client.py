# mypy: ignore-errors
# The TCP echo client from the Python docs (asyncio-stream.html), as written
# except the address (10.77.0.1, the lab's kernel peer, for 127.0.0.1).
import asyncio


async def tcp_echo_client(message):
    reader, writer = await asyncio.open_connection(
        '10.77.0.1', 8888)

    print(f'Send: {message!r}')
    writer.write(message.encode())
    await writer.drain()

    data = await reader.read(100)
    print(f'Received: {data.decode()!r}')

    print('Close the connection')
    writer.close()
    await writer.wait_closed()

if __name__ == "__main__":
    asyncio.run(tcp_echo_client('Hello World!'))
