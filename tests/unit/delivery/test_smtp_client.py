"""Wire helpers of the outbound SMTP client, and extension checks before MAIL."""

from __future__ import annotations

from hardmail.delivery.outbound import OutgoingMessage, extension_refusal, mail_params
from hardmail.delivery.smtp_client import Reply, SmtpClient, Timeouts, dot_stuff, parse_extensions


def test_dot_stuffing_doubles_leading_periods_and_terminates() -> None:
    assert dot_stuff(b".hidden\r\nok\r\n.\r\n") == b"..hidden\r\nok\r\n..\r\n.\r\n"
    assert dot_stuff(b"no final newline") == b"no final newline\r\n.\r\n"


def test_ehlo_keywords_are_parsed() -> None:
    reply = Reply(250, ("mx.example greets you", "PIPELINING", "SIZE 1000", "8bitmime"))
    assert parse_extensions(reply) == {"PIPELINING": "", "SIZE": "1000", "8BITMIME": ""}


def _client(extensions: dict[str, str]) -> SmtpClient:
    client = SmtpClient.__new__(SmtpClient)
    client.timeouts = Timeouts()
    client.extensions = extensions
    return client


def test_a_message_the_peer_cannot_take_fails_with_a_clear_status() -> None:
    big = OutgoingMessage("Q", "a@example.test", ("b@example.net",), b"Subject: x\r\n\r\n" + b"y" * 2000)
    assert extension_refusal(_client({"SIZE": "1000", "8BITMIME": ""}), big).code == 552  # type: ignore[union-attr]
    eight_bit = OutgoingMessage("Q", "a@example.test", ("b@example.net",), "Subject: x\r\n\r\nsmørrebrød\r\n".encode())
    refusal = extension_refusal(_client({}), eight_bit)
    assert refusal is not None and refusal.text.startswith("5.6.3")
    utf8 = OutgoingMessage("Q", "a@example.test", ("jösé@example.net",), b"Subject: x\r\n\r\nhi\r\n")
    refusal = extension_refusal(_client({"8BITMIME": ""}), utf8)
    assert refusal is not None and refusal.text.startswith("5.6.7")
    assert extension_refusal(_client({"SMTPUTF8": "", "8BITMIME": ""}), utf8) is None


def test_mail_parameters_follow_the_offered_extensions() -> None:
    message = OutgoingMessage("Q", "a@example.test", ("b@example.net",), "Subject: x\r\n\r\nø\r\n".encode())
    assert mail_params(_client({"SIZE": "0", "8BITMIME": ""}), message) == [f"SIZE={len(message.data)}",
                                                                             "BODY=8BITMIME"]
