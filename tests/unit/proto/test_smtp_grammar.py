"""SMTP command grammar through the connection: paths, ESMTP parameters, BDAT/HELO/AUTH syntax."""

from __future__ import annotations

import pytest

from hardmail.core.address import Address
from hardmail.proto.smtp import grammar
from hardmail.proto.smtp.events import Auth, Helo, Mail, ProtocolError, Rcpt


def one(driver, line: str | bytes):
    data = line if isinstance(line, bytes) else line.encode("utf-8")
    (exchange,) = driver.feed(data + b"\r\n")
    return exchange


def mail(driver, argument: str):
    return one(driver, f"MAIL FROM:{argument}")


def rcpt_after_mail(driver, argument: str, mail_params: str = ""):
    assert mail(driver, f"<s@example.net>{mail_params}").reply.code == 250
    return one(driver, f"RCPT TO:{argument}")


# ----- MAIL / RCPT paths --------------------------------------------------------------------------
def test_null_reverse_path(ready):
    exchange = mail(ready, "<>")
    assert isinstance(exchange.event, Mail)
    assert exchange.event.sender is None
    assert exchange.wire == b"250 2.1.0 Sender OK\r\n"


def test_plain_sender_is_parsed_and_normalised(ready):
    event = mail(ready, "<Alice@Example.NET>").event
    assert isinstance(event, Mail)
    assert event.sender == Address("Alice", "example.net")
    assert event.sender.key == "alice@example.net"


def test_source_route_is_ignored(ready):
    event = mail(ready, "<@relay.one,@relay.two:user@example.net>").event
    assert isinstance(event, Mail)
    assert event.sender == Address("user", "example.net")


def test_source_route_without_mailbox_is_not_a_null_path(ready):
    exchange = mail(ready, "<@relay.one:>")
    assert isinstance(exchange.event, ProtocolError)
    assert exchange.reply.code == 501


@pytest.mark.parametrize("argument", ["<a@example.net>", " <a@example.net>", "   <a@example.net>"])
def test_spaces_after_colon_are_tolerated(ready, argument):
    assert isinstance(mail(ready, argument).event, Mail)


def test_verb_and_keyword_are_case_insensitive(ready):
    exchange = one(ready, "mail from:<a@example.net>")
    assert isinstance(exchange.event, Mail)


@pytest.mark.parametrize("argument", ["a@example.net", "<a@example.net", "a@example.net>"])
def test_missing_brackets_refused(ready, argument):
    exchange = mail(ready, argument)
    assert isinstance(exchange.event, ProtocolError)
    assert exchange.reply.code == 501
    assert exchange.reply.enhanced == "5.1.7"


def test_missing_from_keyword(ready):
    exchange = one(ready, "MAIL <a@example.net>")
    assert exchange.reply.code == 501
    assert exchange.reply.enhanced == "5.5.4"


def test_garbage_right_after_bracket_refused(ready):
    assert mail(ready, "<a@example.net>SIZE=10").reply.code == 501


@pytest.mark.parametrize(
    ("argument", "local"),
    [
        ('<"john doe"@example.net>', '"john doe"'),
        ('<"a>b"@example.net>', '"a>b"'),
        ('<"a@b"@example.net>', '"a@b"'),
        ('<"a\\"b"@example.net>', '"a\\"b"'),
    ],
)
def test_quoted_local_parts(ready, argument, local):
    event = mail(ready, argument).event
    assert isinstance(event, Mail)
    assert event.sender is not None
    assert event.sender.local == local
    assert event.sender.domain == "example.net"


def test_quoted_local_part_with_parameters_after_it(ready):
    event = mail(ready, '<"a>b c"@example.net> SIZE=100').event
    assert isinstance(event, Mail)
    assert event.params.size == 100


def test_bad_local_part_refused(ready):
    exchange = mail(ready, "<a..b@example.net>")
    assert (exchange.reply.code, exchange.reply.enhanced) == (501, "5.1.7")


def test_idn_domain_with_smtputf8_becomes_a_label(ready):
    event = mail(ready, "<jörg@bücher.example> SMTPUTF8").event
    assert isinstance(event, Mail)
    assert event.params.smtputf8
    assert event.sender == Address("jörg", "xn--bcher-kva.example")


@pytest.mark.parametrize("path", ["<jörg@example.net>", "<user@bücher.example>"])
def test_non_ascii_without_smtputf8_refused_553(ready, path):
    exchange = mail(ready, path)
    assert isinstance(exchange.event, ProtocolError)
    assert (exchange.reply.code, exchange.reply.enhanced) == (553, "5.6.7")


def test_rcpt_utf8_allowed_only_when_mail_said_smtputf8(ready):
    exchange = rcpt_after_mail(ready, "<jörg@bücher.example>", " SMTPUTF8")
    assert isinstance(exchange.event, Rcpt)
    assert exchange.event.recipient.domain == "xn--bcher-kva.example"


def test_rcpt_utf8_without_smtputf8_refused(ready):
    exchange = rcpt_after_mail(ready, "<jörg@example.org>")
    assert (exchange.reply.code, exchange.reply.enhanced) == (553, "5.6.7")


def test_null_forward_path_refused(ready):
    exchange = rcpt_after_mail(ready, "<>")
    assert (exchange.reply.code, exchange.reply.enhanced) == (501, "5.1.3")


@pytest.mark.parametrize("path", ["<Postmaster>", "<postmaster>", "<POSTMASTER>"])
def test_bare_postmaster(ready, path):
    event = rcpt_after_mail(ready, path).event
    assert isinstance(event, Rcpt)
    assert event.bare_postmaster
    assert event.recipient.local == "postmaster"


def test_postmaster_with_domain_is_an_ordinary_recipient(ready):
    event = rcpt_after_mail(ready, "<postmaster@example.org>").event
    assert isinstance(event, Rcpt)
    assert not event.bare_postmaster
    assert event.recipient == Address("postmaster", "example.org")


def test_non_utf8_command_line_refused(ready):
    exchange = one(ready, b"MAIL FROM:<\xff@example.net>")
    assert isinstance(exchange.event, ProtocolError)
    assert exchange.reply.code == 501


# ----- MAIL parameters ----------------------------------------------------------------------------
def test_size_parameter(ready):
    event = mail(ready, "<a@example.net> SIZE=12345").event
    assert isinstance(event, Mail)
    assert event.params.size == 12345


@pytest.mark.parametrize("value", ["SIZE", "SIZE=abc", "SIZE=-1", "SIZE=²", "SIZE=١٢", "SIZE=" + "9" * 21])
def test_bad_size_is_a_syntax_error(ready, value):
    exchange = mail(ready, f"<a@example.net> {value}")
    assert isinstance(exchange.event, ProtocolError)
    assert exchange.reply.code == 501


@pytest.mark.parametrize(("value", "body"), [("7BIT", "7BIT"), ("8BITMIME", "8BITMIME"), ("8bitmime", "8BITMIME")])
def test_body_parameter(ready, value, body):
    event = mail(ready, f"<a@example.net> BODY={value}").event
    assert isinstance(event, Mail)
    assert event.params.body == body


def test_body_binarymime_refused_555(ready):
    exchange = mail(ready, "<a@example.net> BODY=BINARYMIME")
    assert (exchange.reply.code, exchange.reply.enhanced) == (555, "5.5.4")


def test_smtputf8_takes_no_value(ready):
    assert mail(ready, "<a@example.net> SMTPUTF8=yes").reply.code == 555


@pytest.mark.parametrize(("value", "ret"), [("FULL", "FULL"), ("hdrs", "HDRS")])
def test_ret_parameter(ready, value, ret):
    event = mail(ready, f"<a@example.net> RET={value}").event
    assert isinstance(event, Mail)
    assert event.params.ret == ret


def test_bad_ret_value_refused(ready):
    assert mail(ready, "<a@example.net> RET=BODY").reply.is_permanent


def test_envid_is_xtext_decoded(ready):
    event = mail(ready, "<a@example.net> ENVID=QQ+2B314+3Dx").event
    assert isinstance(event, Mail)
    assert event.params.envid == "QQ+314=x"


def test_envid_is_capped_at_100_characters(ready):
    event = mail(ready, "<a@example.net> ENVID=" + "x" * 150).event
    assert isinstance(event, Mail)
    assert event.params.envid == "x" * 100


@pytest.mark.parametrize("value", ["a+0D+0Ab", "a+00b", "a+7Fb", "a+zz", "a+2b"])
def test_envid_with_control_characters_or_bad_xtext_refused(ready, value):
    exchange = mail(ready, f"<a@example.net> ENVID={value}")
    assert isinstance(exchange.event, ProtocolError)
    assert exchange.reply.code == 501


def test_auth_parameter(ready):
    event = mail(ready, "<a@example.net> AUTH=user+2Btag@example.net").event
    assert isinstance(event, Mail)
    assert event.params.auth == "user+tag@example.net"


def test_auth_parameter_null(ready):
    event = mail(ready, "<a@example.net> AUTH=<>").event
    assert isinstance(event, Mail)
    assert event.params.auth == "<>"


def test_all_mail_parameters_together(ready):
    event = mail(ready, "<a@example.net> SIZE=10 BODY=8BITMIME SMTPUTF8 RET=HDRS ENVID=id1 AUTH=<>").event
    assert isinstance(event, Mail)
    assert event.params.size == 10
    assert event.params.body == "8BITMIME"
    assert event.params.smtputf8
    assert (event.params.ret, event.params.envid, event.params.auth) == ("HDRS", "id1", "<>")


def test_unknown_mail_parameter_refused_555(ready):
    exchange = mail(ready, "<a@example.net> FOO=BAR")
    assert (exchange.reply.code, exchange.reply.enhanced) == (555, "5.5.4")


def test_duplicate_parameter_refused(ready):
    exchange = mail(ready, "<a@example.net> SIZE=1 size=2")
    assert exchange.reply.code == 501
    assert "Duplicate" in exchange.reply.lines[0]


@pytest.mark.parametrize("item", ["=x", "SIZE=", "SI_ZE=1", "A=b=c"])
def test_malformed_parameter(ready, item):
    assert mail(ready, f"<a@example.net> {item}").reply.code == 501


def test_malformed_parameter_reply_is_ascii(ready):
    exchange = mail(ready, "<a@example.net> ö=1")
    assert exchange.reply.code == 501
    assert exchange.wire.isascii()


# ----- RCPT parameters ----------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("value", "notify"),
    [("NEVER", ("NEVER",)), ("success,failure", ("SUCCESS", "FAILURE")), ("DELAY", ("DELAY",))],
)
def test_rcpt_notify(ready, value, notify):
    event = rcpt_after_mail(ready, f"<b@example.org> NOTIFY={value}").event
    assert isinstance(event, Rcpt)
    assert event.params.notify == notify


@pytest.mark.parametrize("value", ["NEVER,SUCCESS", "SOMETIMES", "SUCCESS,"])
def test_rcpt_bad_notify(ready, value):
    assert rcpt_after_mail(ready, f"<b@example.org> NOTIFY={value}").reply.code == 501


def test_rcpt_orcpt_decoded(ready):
    event = rcpt_after_mail(ready, "<b@example.org> ORCPT=rfc822;b+2Btag@example.org").event
    assert isinstance(event, Rcpt)
    assert event.params.orcpt == "rfc822;b+tag@example.org"


def test_rcpt_orcpt_without_type_refused(ready):
    assert rcpt_after_mail(ready, "<b@example.org> ORCPT=b@example.org").reply.code == 555


def test_rcpt_unknown_parameter_555(ready):
    exchange = rcpt_after_mail(ready, "<b@example.org> SIZE=10")
    assert (exchange.reply.code, exchange.reply.enhanced) == (555, "5.5.4")


def test_rcpt_missing_to_keyword(ready):
    assert rcpt_after_mail(ready, "<b@example.org>").reply.code == 250
    assert one(ready, "RCPT <c@example.org>").reply.code == 501


# ----- BDAT / HELO / AUTH syntax -----------------------------------------------------------------
@pytest.mark.parametrize("argument", ["", "x", "-1", "10 NOTLAST", "10 LAST extra", "²", "1" * 21])
def test_bdat_syntax_errors(ready, argument):
    exchange = one(ready, f"BDAT {argument}")
    assert isinstance(exchange.event, ProtocolError)
    assert exchange.reply.code == 501


@pytest.mark.parametrize("name", ["client.example.net", "[192.0.2.1]", "[IPv6:2001:db8::1]", "localhost", "x"])
def test_helo_names(session, name):
    exchange = one(session, f"EHLO {name}")
    assert isinstance(exchange.event, Helo)
    assert exchange.event.hostname == name
    assert exchange.event.extended


def test_helo_is_not_extended(session):
    exchange = one(session, "HELO client.example.net")
    assert isinstance(exchange.event, Helo)
    assert not exchange.event.extended
    assert exchange.wire == b"250 mx.example.org\r\n"


@pytest.mark.parametrize("line", ["EHLO", "EHLO ", "HELO", "EHLO two words", "EHLO a\x01b"])
def test_bad_helo_names(session, line):
    exchange = one(session, line)
    assert isinstance(exchange.event, ProtocolError)
    assert exchange.reply.code == 501


def test_auth_syntax(tls_auth):
    driver = tls_auth()
    event = one(driver, "AUTH plain dGVzdA==").event
    assert isinstance(event, Auth)
    assert event.mechanism == "PLAIN"
    assert event.initial_response == "dGVzdA=="


@pytest.mark.parametrize("argument", ["", "PLAIN a b"])
def test_auth_syntax_errors(tls_auth, argument):
    exchange = one(tls_auth(), f"AUTH {argument}")
    assert isinstance(exchange.event, ProtocolError)
    assert exchange.reply.code == 501


# ----- pure helpers -------------------------------------------------------------------------------
def test_decode_xtext():
    assert grammar.decode_xtext("a+2Bb+3Dc") == "a+b=c"
    assert grammar.decode_xtext("plain") == "plain"


def test_split_command():
    assert grammar.split_command("mail FROM:<a@b>") == grammar.CommandLine("MAIL", "FROM:<a@b>")
    assert grammar.split_command("QUIT") == grammar.CommandLine("QUIT", "")
