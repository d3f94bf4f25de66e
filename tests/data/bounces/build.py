"""Writes the bounce corpus's template-built messages (the real-world shapes listed in README.md) and manifest.csv.

Run `python tests/data/bounces/build.py` from the repository root; it rewrites the built .eml files
and manifest.csv, keeping the captured ones (postfix_local_*.eml, made with a real Postfix) and
their manifest rows. Each message follows the wording and structure of the system it is named
after: RFC 3464 / 5965 / 6533 examples, the MTAs' own bounce templates (Postfix bounce(8),
Exim's "Mail delivery failed", qmail-send, sendmail's transcript, Exchange/Office 365 NDRs,
Gmail, Yahoo, Lotus Notes/Domino, DragonFly Mail Agent, Courier, Japanese carriers), Amazon SES
notifications (raw and inside an SNS envelope) and SendGrid event JSON, as the open-source bounce
parsers' test sets (Sisimai's set-of-emails, flufl.bounce's data) show them.
"""

from __future__ import annotations

import csv
import json
from pathlib import Path

HERE = Path(__file__).resolve().parent
OURS = "sales@bounces.test"
ROWS: list[tuple[str, str, str, str]] = []  # file, kind, reason, note

ORIGINAL = (f"Return-Path: <{OURS}>\nFrom: Sales <{OURS}>\nTo: {{rcpt}}\nSubject: Quick question\n"
            "Message-ID: <corpus.{n}@bounces.test>\nDate: Thu, 03 Dec 2026 10:40:00 +0000\n\n"
            "Hello, this is step 1 of a sequence.\n")


def write(name: str, kind: str, reason: str, raw: str, note: str = "") -> None:
    (HERE / name).write_bytes(raw.replace("\r\n", "\n").replace("\n", "\r\n").encode("utf-8"))
    ROWS.append((name, kind, reason, note))


def dsn(name: str, kind: str, reason: str, *, sender: str, subject: str, human: str,
        recipients: list[tuple[str, str, str | None, str | None]], mta: str = "mx.remote.example",
        extra: str = "", outer: str = "multipart/report; report-type=delivery-status",
        status_type: str = "message/delivery-status", headers_only: bool = False, note: str = "") -> None:
    blocks = [f"Reporting-MTA: dns; {mta}\nArrival-Date: Thu, 3 Dec 2026 10:40:01 +0000"]
    for rcpt, action, status, diag in recipients:
        block = f"Final-Recipient: rfc822; {rcpt}\nAction: {action}"
        if status:
            block += f"\nStatus: {status}"
        if diag:
            block += f"\nDiagnostic-Code: smtp; {diag}"
        blocks.append(block)
    original = ORIGINAL.format(rcpt=recipients[0][0], n=name)
    orig_type = "text/rfc822-headers" if headers_only else "message/rfc822"
    if headers_only:
        original = original.split("\n\n", 1)[0] + "\n"
    raw = (f"Return-Path: <>\nFrom: {sender}\nTo: {OURS}\nSubject: {subject}\nDate: Thu, 3 Dec 2026 10:41:00 +0000\n"
           f"Message-ID: <dsn.{name}@{mta}>\n{extra}MIME-Version: 1.0\nContent-Type: {outer}; boundary=\"BB\"\n\n"
           f"--BB\nContent-Type: text/plain; charset=utf-8\n\n{human}\n\n"
           f"--BB\nContent-Type: {status_type}\n\n" + "\n\n".join(blocks) + "\n\n"
           f"--BB\nContent-Type: {orig_type}\n\n{original}\n--BB--\n")
    write(name, kind, reason, raw, note)


def plain(name: str, kind: str, reason: str, *, sender: str, subject: str, body: str, headers: str = "",
          return_path: str | None = "<>", original_rcpt: str | None = None, note: str = "") -> None:
    rp = f"Return-Path: {return_path}\n" if return_path is not None else ""
    if original_rcpt:
        body += "\n\n------ This is a copy of the message, including all the headers. ------\n\n" + ORIGINAL.format(
            rcpt=original_rcpt, n=name)
    raw = (f"{rp}From: {sender}\nTo: {OURS}\nSubject: {subject}\nDate: Thu, 3 Dec 2026 10:41:00 +0000\n"
           f"Message-ID: <plain.{name}@corpus.example>\n{headers}MIME-Version: 1.0\n"
           f"Content-Type: text/plain; charset=utf-8\n\n{body}\n")
    write(name, kind, reason, raw, note)


def build() -> None:
    pf = "Mail Delivery System <MAILER-DAEMON@mx.remote.example>"
    pf_text = ("This is the mail system at host mx.remote.example.\n\nI'm sorry to have to inform you that your message "
               "could not\nbe delivered to one or more recipients. It's attached below.\n\n                   The mail system\n\n")
    # -- RFC 3464, per MTA ---------------------------------------------------------------------
    dsn("postfix_remote_user_unknown.eml", "hard_bounce", "user_unknown", sender=pf, subject="Undelivered Mail Returned to Sender",
        human=pf_text + "<bob@customer.example>: host mx.customer.example said: 550 5.1.1 <bob@customer.example>: Recipient address rejected: User unknown in virtual mailbox table",
        recipients=[("bob@customer.example", "failed", "5.1.1", "550 5.1.1 <bob@customer.example>: Recipient address rejected: User unknown in virtual mailbox table")])
    dsn("postfix_host_not_found.eml", "hard_bounce", "host_unknown", sender=pf, subject="Undelivered Mail Returned to Sender",
        human=pf_text + "<carol@no-such-domain.example>: Host or domain name not found. Name service error for name=no-such-domain.example type=MX: Host not found",
        recipients=[("carol@no-such-domain.example", "failed", "5.4.4", None)])
    dsn("postfix_delay_warning.eml", "soft_bounce", "network", sender=pf, subject="Delayed Mail (still being retried)",
        human=pf_text.replace("could not\nbe delivered", "has not been delivered yet") + "<dan@slow.example>: connect to mx.slow.example[192.0.2.7]:25: Connection timed out",
        recipients=[("dan@slow.example", "delayed", "4.4.1", None)])
    dsn("postfix_remote_mailbox_full.eml", "hard_bounce", "mailbox_full", sender=pf, subject="Undelivered Mail Returned to Sender",
        human=pf_text + "<erin@customer.example>: host mx.customer.example said: 552 5.2.2 <erin@customer.example>: Mailbox full",
        recipients=[("erin@customer.example", "failed", "5.2.2", "552 5.2.2 <erin@customer.example>: Mailbox full")],
        note="5.x.x: hard by the code class even though mailbox full is often temporary")
    dsn("postfix_spamhaus_block.eml", "hard_bounce", "blocked", sender=pf, subject="Undelivered Mail Returned to Sender",
        human=pf_text + "<frank@customer.example>: host mx.customer.example said: 554 5.7.1 Service unavailable; Client host [192.0.2.1] blocked using zen.spamhaus.org",
        recipients=[("frank@customer.example", "failed", "5.7.1", "554 5.7.1 Service unavailable; Client host [192.0.2.1] blocked using zen.spamhaus.org")])
    dsn("postfix_failed_4xx_over_quota.eml", "soft_bounce", "mailbox_full", sender=pf, subject="Undelivered Mail Returned to Sender",
        human=pf_text + "<gina@customer.example>: host mx.customer.example said: 452 4.2.2 Over quota (in reply to RCPT TO command)",
        recipients=[("gina@customer.example", "failed", "4.2.2", "452 4.2.2 Over quota")],
        note="Action failed with a 4.x.x code: soft, the code decides")
    dsn("postfix_relay_denied.eml", "hard_bounce", "policy", sender=pf, subject="Undelivered Mail Returned to Sender",
        human=pf_text + "<hal@customer.example>: host mx.customer.example said: 554 5.7.1 <hal@customer.example>: Relay access denied",
        recipients=[("hal@customer.example", "failed", "5.7.1", "554 5.7.1 <hal@customer.example>: Relay access denied")])
    dsn("postfix_expired_4_4_7.eml", "soft_bounce", "expired", sender=pf, subject="Undelivered Mail Returned to Sender",
        human=pf_text + "<ivy@slow.example>: delivery temporarily suspended: connect to mx.slow.example: Connection timed out; message expired after 5 days",
        recipients=[("ivy@slow.example", "failed", "4.4.7", "message expired after 5 days")])
    dsn("postfix_too_big.eml", "hard_bounce", "message_too_big", sender=pf, subject="Undelivered Mail Returned to Sender",
        human=pf_text + "<jay@customer.example>: host mx.customer.example said: 552 5.3.4 Message size exceeds fixed limit",
        recipients=[("jay@customer.example", "failed", "5.3.4", "552 5.3.4 Message size exceeds fixed limit")])
    gm = "Mail Delivery Subsystem <mailer-daemon@googlemail.com>"
    dsn("gmail_user_unknown.eml", "hard_bounce", "user_unknown", sender=gm, subject="Delivery Status Notification (Failure)", mta="mx.google.com",
        human="** Address not found **\n\nYour message wasn't delivered to nobody@gmail.com because the address couldn't be found, or is unable to receive mail.",
        recipients=[("nobody@gmail.com", "failed", "5.1.1", "550-5.1.1 The email account that you tried to reach does not exist. Please try double-checking the recipient's email address for typos")],
        extra="Auto-Submitted: auto-replied\n")
    dsn("gmail_dmarc_reject.eml", "hard_bounce", "policy", sender=gm, subject="Delivery Status Notification (Failure)", mta="mx.google.com",
        human="** Message blocked **\n\nYour message to kim@gmail.com has been blocked. See technical details below for more information.",
        recipients=[("kim@gmail.com", "failed", "5.7.26", "550-5.7.26 Unauthenticated email from bounces.test is not accepted due to domain's DMARC policy")])
    dsn("gmail_over_quota_delayed.eml", "soft_bounce", "mailbox_full", sender=gm, subject="Delivery Status Notification (Delay)", mta="mx.google.com",
        human="** Delivery incomplete **\n\nThere was a temporary problem delivering your message to leo@gmail.com. Gmail will retry for 46 more hours.",
        recipients=[("leo@gmail.com", "delayed", "4.2.2", "452-4.2.2 The email account that you tried to reach is over quota")])
    dsn("gmail_rate_limited.eml", "soft_bounce", "throttled", sender=gm, subject="Delivery Status Notification (Delay)", mta="mx.google.com",
        human="There was a temporary problem delivering your message to mia@gmail.com.",
        recipients=[("mia@gmail.com", "delayed", "4.7.28", "421-4.7.28 Our system has detected an unusual rate of unsolicited mail; try again later")],
        note="wording (rate/try later) beats the generic 4.7.x code for the reason")
    dsn("gmail_disabled.eml", "hard_bounce", "mailbox_disabled", sender=gm, subject="Delivery Status Notification (Failure)", mta="mx.google.com",
        human="Your message wasn't delivered to ned@gmail.com because the account is disabled.",
        recipients=[("ned@gmail.com", "failed", "5.2.1", "550-5.2.1 The email account that you tried to reach is disabled")])
    o365 = "Microsoft Outlook <MicrosoftExchange329e71ec88ae4615bbc36ab6ce41109e@contoso.com>"
    o365_head = "X-MS-Exchange-Message-Is-Ndr:\nAuto-Submitted: auto-replied\n"
    dsn("o365_recipient_not_found.eml", "hard_bounce", "user_unknown", sender=o365, subject="Undeliverable: Quick question", mta="AM6PR01MB1234.eurprd01.prod.outlook.com",
        human="Your message to olive@contoso.com couldn't be delivered.\nolive wasn't found at contoso.com.\n\nDiagnostic information for administrators:\nRemote Server returned '550 5.1.10 RESOLVER.ADR.RecipientNotFound; Recipient not found by SMTP address lookup'",
        recipients=[("olive@contoso.com", "failed", "5.1.10", "550 5.1.10 RESOLVER.ADR.RecipientNotFound; Recipient not found by SMTP address lookup")], extra=o365_head)
    dsn("o365_blocked_ts01.eml", "hard_bounce", "blocked", sender=o365, subject="Undeliverable: Quick question", mta="VI1EUR01FT001.mail.protection.outlook.com",
        human="Your message to pat@contoso.com couldn't be delivered.",
        recipients=[("pat@contoso.com", "failed", "5.7.1", "550 5.7.1 Unfortunately, messages from [192.0.2.1] weren't sent. Please contact your Internet service provider since part of their network is on our block list (S3150)")], extra=o365_head)
    dsn("o365_mailbox_full.eml", "hard_bounce", "mailbox_full", sender=o365, subject="Undeliverable: Quick question", mta="DB7PR01MB.eurprd01.prod.outlook.com",
        human="Your message to quin@contoso.com couldn't be delivered.\nquin's mailbox is full.",
        recipients=[("quin@contoso.com", "failed", "5.2.2", "554 5.2.2 mailbox full; STOREDRV.Deliver.Exception:QuotaExceededException")], extra=o365_head)
    dsn("o365_access_denied.eml", "hard_bounce", "user_unknown", sender=o365, subject="Undeliverable: Quick question", mta="VI1EUR01FT001.mail.protection.outlook.com",
        human="Your message to rob@contoso.com couldn't be delivered.",
        recipients=[("rob@contoso.com", "failed", "5.4.1", "550 5.4.1 Recipient address rejected: Access denied. AS(201806281)")], extra=o365_head)
    dsn("exchange2010_user_unknown.eml", "hard_bounce", "user_unknown", sender="postmaster@fabrikam.example", subject="Undeliverable: Quick question", mta="ex01.fabrikam.example",
        human="Delivery has failed to these recipients or groups:\n\nsam@fabrikam.example\nThe e-mail address you entered couldn't be found.",
        recipients=[("sam@fabrikam.example", "failed", "5.1.1", "#550 5.1.1 RESOLVER.ADR.RecipNotFound; not found ##")])
    sm = "Mail Delivery Subsystem <MAILER-DAEMON@mail.oldcorp.example>"
    dsn("sendmail_user_unknown.eml", "hard_bounce", "user_unknown", sender=sm, subject="Returned mail: see transcript for details", mta="mail.oldcorp.example",
        human="The original message was received at Thu, 3 Dec 2026 10:40:01 GMT\nfrom localhost [127.0.0.1]\n\n   ----- The following addresses had permanent fatal errors -----\n<tom@oldcorp.example>\n    (reason: 550 5.1.1 <tom@oldcorp.example>... User unknown)",
        recipients=[("tom@oldcorp.example", "failed", "5.1.1", "550 5.1.1 <tom@oldcorp.example>... User unknown")])
    dsn("sendmail_host_unknown.eml", "hard_bounce", "host_unknown", sender=sm, subject="Returned mail: see transcript for details", mta="mail.oldcorp.example",
        human="The original message was received at Thu, 3 Dec 2026 10:40:01 GMT\n\n   ----- The following addresses had permanent fatal errors -----\n<uma@nxdomain.example>\n    (reason: 550 Host unknown)\n\n   ----- Transcript of session follows -----\n550 5.1.2 <uma@nxdomain.example>... Host unknown (Name server: nxdomain.example: host not found)",
        recipients=[("uma@nxdomain.example", "failed", "5.1.2", None)])
    dsn("sendmail_delay_warning.eml", "soft_bounce", "expired", sender=sm, subject="Warning: could not send message for past 4 hours", mta="mail.oldcorp.example",
        human="    **********************************************\n    **      THIS IS A WARNING MESSAGE ONLY      **\n    **  YOU DO NOT NEED TO RESEND YOUR MESSAGE  **\n    **********************************************\n\nThe original message was received at Thu, 3 Dec 2026 06:40:01 GMT\n\n   ----- Transcript of session follows -----\n<vic@slow.example>... Deferred: Connection timed out with mx.slow.example.\nWarning: message still undelivered after 4 hours\nWill keep trying until message is 5 days old",
        recipients=[("vic@slow.example", "delayed", "4.4.7", None)])
    dsn("yahoo_dsn_user_unknown.eml", "hard_bounce", "user_unknown", sender="MAILER-DAEMON@yahoo.com", subject="Failure Notice", mta="mta1000.mail.ne1.yahoo.com",
        human="Sorry, we were unable to deliver your message to the following address.\n\n<wes@yahoo.com>:\n554: delivery error: dd This user doesn't have a yahoo.com account (wes@yahoo.com) [-5] - mta1000.mail.ne1.yahoo.com",
        recipients=[("wes@yahoo.com", "failed", "5.0.0", "554 delivery error: dd This user doesn't have a yahoo.com account (wes@yahoo.com) [-5]")])
    dsn("sendgrid_expired_4_4_7.eml", "soft_bounce", "expired", sender="SendGrid <bounces@sendgrid.net>", subject="Delivery Status Notification: message expired", mta="o1.ptr1234.sendgrid.net",
        human="This message was not delivered: delivery attempts expired.", recipients=[("xena@slow.example", "expired", "4.4.7", "temporary failure, message expired")])
    dsn("sendgrid_expired_no_status.eml", "soft_bounce", "expired", sender="SendGrid <bounces@sendgrid.net>", subject="Delivery Status Notification", mta="o1.ptr1234.sendgrid.net",
        human="Delivery attempts for this message expired.", recipients=[("yuri@slow.example", "expired", None, None)],
        note="Action: expired without a Status: a failure, soft (given up after retries)")
    dsn("ses_dsn_user_unknown.eml", "hard_bounce", "user_unknown", sender="MAILER-DAEMON@amazonses.com", subject="Delivery Status Notification (Failure)", mta="a1-2.smtp-out.eu-west-1.amazonses.com",
        human="An error occurred while trying to deliver the mail to the following recipients:\nzoe@customer.example",
        recipients=[("zoe@customer.example", "failed", "5.1.1", "550 5.1.1 user unknown")])
    dsn("courier_user_unknown.eml", "hard_bounce", "user_unknown", sender="Courier mail server at mx.isp.example <@>", subject="NOTICE: mail delivery status.", mta="mx.isp.example",
        human="This is a delivery status notification from mx.isp.example,\nrunning the Courier mail server.\n\n<abe@isp.example>:\n    550 User unknown.",
        recipients=[("abe@isp.example", "failed", "5.0.0", "550 User unknown.")])
    dsn("dsn_5_0_0_mailbox_unavailable.eml", "hard_bounce", "user_unknown", sender=pf, subject="Undelivered Mail Returned to Sender",
        human=pf_text + "<bea@customer.example>: 550 Requested action not taken: mailbox unavailable",
        recipients=[("bea@customer.example", "failed", "5.0.0", "550 Requested action not taken: mailbox unavailable")])
    dsn("dsn_global_smtputf8.eml", "hard_bounce", "user_unknown", sender=pf, subject="Undelivered Mail Returned to Sender",
        human=pf_text + "<josé@exemple.example>: 550 5.1.1 user unknown", status_type="message/global-delivery-status",
        recipients=[("josé@exemple.example", "failed", "5.1.1", "550 5.1.1 user unknown")], note="RFC 6533 global DSN")
    dsn("dsn_in_multipart_mixed.eml", "hard_bounce", "user_unknown", sender="postmaster@appliance.example", subject="Delivery failure",
        human="Your message could not be delivered.", outer="multipart/mixed",
        recipients=[("cid@appliance.example", "failed", "5.1.1", "550 5.1.1 unknown recipient")],
        note="a delivery-status part inside multipart/mixed (some appliances)")
    dsn("dsn_status_only_in_diagnostic.eml", "hard_bounce", "user_unknown", sender=pf, subject="Undelivered Mail Returned to Sender",
        human=pf_text, recipients=[("dee@customer.example", "failed", None, "550 5.1.1 <dee@customer.example>: Recipient address rejected")],
        note="no Status field: the code in Diagnostic-Code decides")
    dsn("dsn_5_4_7_expired.eml", "hard_bounce", "expired", sender=pf, subject="Undelivered Mail Returned to Sender",
        human=pf_text, recipients=[("eve@slow.example", "failed", "5.4.7", "delivery time expired")])
    dsn("dsn_two_recipients.eml", "hard_bounce", "user_unknown", sender=pf, subject="Undelivered Mail Returned to Sender",
        human=pf_text, recipients=[("fay@customer.example", "delayed", "4.4.1", None), ("gus@customer.example", "failed", "5.1.1", "550 5.1.1 no such user")])
    dsn("dsn_moved.eml", "hard_bounce", "mailbox_disabled", sender=pf, subject="Undelivered Mail Returned to Sender",
        human=pf_text, recipients=[("hank@customer.example", "failed", "5.1.6", "551 5.1.6 user has moved; no forwarding address")])
    dsn("dsn_headers_only.eml", "hard_bounce", "user_unknown", sender=pf, subject="Undelivered Mail Returned to Sender",
        human=pf_text, recipients=[("iris@customer.example", "failed", "5.1.1", "550 5.1.1 user unknown")], headers_only=True)
    dsn("notes_dsn.eml", "hard_bounce", "user_unknown", sender="Postmaster@notes.bigco.example", subject="DELIVERY FAILURE: User jack (jack@bigco.example) not listed in Domino Directory", mta="notes.bigco.example",
        human="Your message\n\n  Subject: Quick question\n\nwas not delivered to:\n\n  jack@bigco.example\n\nbecause:\n\n  User jack (jack@bigco.example) not listed in Domino Directory",
        recipients=[("jack@bigco.example", "failed", "5.0.0", None)])

    # -- MTAs' own (non-RFC 3464) formats --------------------------------------------------------
    qm = "MAILER-DAEMON@mail.qhost.example"
    qm_head = "Hi. This is the qmail-send program at mail.qhost.example.\nI'm afraid I wasn't able to deliver your message to the following addresses.\nThis is a permanent error; I've given up. Sorry it didn't work out.\n\n"
    plain("qmail_user_unknown.eml", "hard_bounce", "user_unknown", sender=qm, subject="failure notice",
          body=qm_head + "<kai@qhost.example>:\nSorry, no mailbox here by that name. (#5.1.1)", original_rcpt="kai@qhost.example")
    plain("qmail_host_unknown.eml", "hard_bounce", "host_unknown", sender=qm, subject="failure notice",
          body=qm_head + "<lou@nowhere.example>:\nSorry, I couldn't find any host named nowhere.example. (#5.1.2)", original_rcpt="lou@nowhere.example")
    plain("qmail_queue_too_long.eml", "soft_bounce", "expired", sender=qm, subject="failure notice",
          body=qm_head + "<max@slow.example>:\n192.0.2.9 does not like recipient.\nSorry, I wasn't able to establish an SMTP connection. (#4.4.1)\nI'm not going to try again; this message has been in the queue too long.",
          original_rcpt="max@slow.example", note="qmail gives up with a 4.x.x code: soft by the code")
    plain("qmail_over_quota.eml", "hard_bounce", "mailbox_full", sender=qm, subject="failure notice",
          body=qm_head + "<nia@qhost.example>:\nThe users mailfolder is over the allowed quota (size). (#5.2.2)", original_rcpt="nia@qhost.example")
    ex = "Mail Delivery System <Mailer-Daemon@mx1.hoster.example>"
    ex_head = ("This message was created automatically by mail delivery software.\n\nA message that you sent could not be delivered "
               "to one or more of its recipients. This is a permanent error. The following address(es) failed:\n\n")
    plain("exim_user_unknown.eml", "hard_bounce", "user_unknown", sender=ex, subject="Mail delivery failed: returning message to sender",
          headers="X-Failed-Recipients: otto@customer.example\nAuto-Submitted: auto-replied\n",
          body=ex_head + "  otto@customer.example\n    host mx.customer.example [192.0.2.5]\n    SMTP error from remote mail server after RCPT TO:<otto@customer.example>:\n    550 5.1.1 <otto@customer.example>: Recipient address rejected: User unknown in virtual mailbox table",
          original_rcpt="otto@customer.example")
    plain("exim_mailbox_full.eml", "hard_bounce", "mailbox_full", sender=ex, subject="Mail delivery failed: returning message to sender",
          headers="X-Failed-Recipients: pia@customer.example\nAuto-Submitted: auto-replied\n",
          body=ex_head + "  pia@customer.example\n    host mx.customer.example [192.0.2.5]\n    SMTP error from remote mail server after RCPT TO:<pia@customer.example>:\n    552 5.2.2 Mailbox full",
          original_rcpt="pia@customer.example")
    plain("exim_retry_timeout.eml", "soft_bounce", "expired", sender=ex, subject="Mail delivery failed: returning message to sender",
          headers="X-Failed-Recipients: ray@slow.example\nAuto-Submitted: auto-replied\n",
          body=ex_head + "  ray@slow.example\n    retry timeout exceeded", original_rcpt="ray@slow.example",
          note="no status code: expired (given up after retries) is soft, whatever flufl.bounce guesses")
    plain("exim_unrouteable.eml", "hard_bounce", "host_unknown", sender=ex, subject="Mail delivery failed: returning message to sender",
          headers="X-Failed-Recipients: sue@nxdomain.example\nAuto-Submitted: auto-replied\n",
          body=ex_head + "  sue@nxdomain.example\n    Unrouteable address", original_rcpt="sue@nxdomain.example")
    plain("exim_delay_warning.eml", "soft_bounce", "system", sender=ex, subject="Warning: message 1kABCD-0001Xy-1z delayed 24 hours",
          headers="Auto-Submitted: auto-replied\nX-Failed-Recipients: ted@slow.example\n",
          body="This message was created automatically by mail delivery software.\nA message that you sent has not yet been delivered to one or more of its\nrecipients after more than 24 hours on the queue on mx1.hoster.example.\n\nThe message identifier is:     1kABCD-0001Xy-1z\n\nThe address to which the message has not yet been delivered is:\n\n  ted@slow.example\n    Delay reason: SMTP error from remote mail server after end of data:\n    451 4.4.1 Temporary local problem\n\nNo action is required on your part. Delivery attempts will continue for some time.")
    plain("sendmail_plain_transcript.eml", "hard_bounce", "user_unknown", sender="Mail Delivery Subsystem <MAILER-DAEMON@old.example>",
          subject="Returned mail: User unknown",
          body="The original message was received at Thu, 3 Dec 2026 10:40:01 GMT\n\n   ----- Transcript of session follows -----\n... while talking to mx.old.example.:\n>>> RCPT To:<uli@old.example>\n<<< 550 5.1.1 <uli@old.example>... User unknown\n550 5.1.1 uli@old.example... User unknown",
          original_rcpt="uli@old.example")
    plain("gmail_plain_permanent.eml", "hard_bounce", "user_unknown", sender="Mail Delivery Subsystem <mailer-daemon@googlemail.com>",
          subject="Delivery Status Notification (Failure)",
          body="Delivery to the following recipient failed permanently:\n\n     val@customer.example\n\nTechnical details of permanent failure:\nGoogle tried to deliver your message, but it was rejected by the server for the recipient domain customer.example by mx.customer.example. [192.0.2.5].\n\nThe error that the other server returned was:\n550 5.1.1 <val@customer.example>... User unknown",
          original_rcpt="val@customer.example")
    plain("gmail_plain_delayed.eml", "soft_bounce", "network", sender="Mail Delivery Subsystem <mailer-daemon@googlemail.com>",
          subject="Delivery Status Notification (Delay)",
          body="This is an automatically generated Delivery Status Notification\n\nTHIS IS A WARNING MESSAGE ONLY.\n\nYOU DO NOT NEED TO RESEND YOUR MESSAGE.\n\nDelivery to the following recipient has been delayed:\n\n     wyn@slow.example\n\nMessage will be retried for 2 more day(s)\n\nTechnical details of temporary failure:\nThe recipient server did not accept our requests to connect. [mx.slow.example. (10): Connection timed out]\n421 4.4.1 Connection timed out",
          original_rcpt="wyn@slow.example")
    plain("yahoo_plain_user_unknown.eml", "hard_bounce", "user_unknown", sender="MAILER-DAEMON@yahoo.com", subject="Failure Notice",
          body="Sorry, we were unable to deliver your message to the following address.\n\n<xia@customer.example>:\nRemote host said: 550 5.1.1 <xia@customer.example>... User unknown [RCPT_TO]",
          original_rcpt="xia@customer.example")
    plain("yahoo_plain_no_account.eml", "hard_bounce", "user_unknown", sender="MAILER-DAEMON@yahoo.com", subject="Failure Notice",
          body="Sorry, we were unable to deliver your message to the following address.\n\n<yan@yahoo.com>:\n554: delivery error: dd This user doesn't have a yahoo.com account (yan@yahoo.com) [-5] - mta1000.mail.ne1.yahoo.com",
          original_rcpt="yan@yahoo.com")
    plain("notes_plain_not_listed.eml", "hard_bounce", "user_unknown", sender="Postmaster@notes.bigco.example",
          subject="DELIVERY FAILURE: User zed (zed@bigco.example) not listed in Domino Directory",
          body="Your message\n\n  Subject: Quick question\n\nwas not delivered to:\n\n  zed@bigco.example\n\nbecause:\n\n  User zed (zed@bigco.example) not listed in Domino Directory",
          return_path=None)
    plain("notes_plain_mailbox_full.eml", "soft_bounce", "mailbox_full", sender="Postmaster@notes.bigco.example",
          subject="DELIVERY FAILURE: Recipient's mailbox is full", return_path=None,
          body="Your message\n\n  Subject: Quick question\n\nwas not delivered to:\n\n  amy@bigco.example\n\nbecause:\n\n  The recipient's mailbox is full",
          note="no code: mailbox full defaults to soft")
    plain("dragonfly_user_unknown.eml", "hard_bounce", "user_unknown", sender="MAILER-DAEMON@mx.bsd.example", subject="Mail delivery failed",
          body="This is the DragonFly Mail Agent v0.11 at mx.bsd.example.\n\nThere was an error delivering your mail to <bo@customer.example>.\n\nmx.customer.example [192.0.2.5] did not like our RCPT TO:\n550 5.1.1 <bo@customer.example>: Recipient address rejected: User unknown\n\nOriginal message follows.\n\n" + ORIGINAL.format(rcpt="bo@customer.example", n="df1"))
    plain("dragonfly_host_unknown.eml", "hard_bounce", "host_unknown", sender="MAILER-DAEMON@mx.bsd.example", subject="Mail delivery failed",
          body="This is the DragonFly Mail Agent v0.11 at mx.bsd.example.\n\nThere was an error delivering your mail to <cy@nxdomain.example>.\n\ncan not deliver: DNS lookup failure: host nxdomain.example not found, no mail exchangers\n")
    plain("exchange2003_plain.eml", "hard_bounce", "user_unknown", sender="System Administrator <postmaster@oldex.example>",
          subject="Undeliverable: Quick question", return_path=None,
          body="Your message did not reach some or all of the intended recipients.\n\n      Subject:\tQuick question\n      Sent:\t12/3/2026 10:40 AM\n\nThe following recipient(s) cannot be reached:\n\n      dot@oldex.example on 12/3/2026 10:41 AM\n            The e-mail account does not exist at the organization this message was sent to.\n            <mail.oldex.example #5.1.1>")
    plain("o365_plain_html_text.eml", "hard_bounce", "user_unknown", sender="postmaster@outlook.com", subject="Undeliverable: Quick question",
          body="Your message to eli@outlook.com couldn't be delivered.\neli wasn't found at outlook.com.\n\nDiagnostic information for administrators:\nGenerating server: DM6PR01MB.namprd01.prod.outlook.com\neli@outlook.com\nRemote Server returned '550 5.5.0 Requested action not taken: mailbox unavailable (S2017062302)'")
    plain("ezweb_disabled.eml", "hard_bounce", "mailbox_disabled", sender="MAILER-DAEMON@ezweb.ne.jp", subject="Mail System Error - Returned Mail",
          body="The user(s) account is disabled.\n\n<fumi@ezweb.ne.jp>: 550 user unknown", original_rcpt="fumi@ezweb.ne.jp")
    plain("docomo_no_reason.eml", "hard_bounce", "unknown", sender="Postmaster@docomo.ne.jp", subject="Returned mail",
          body="The following recipients could not receive this message:\n<gen@docomo.ne.jp>\n\nPlease reply to <postmaster@docomo.ne.jp>\nif you feel this message to be in error.",
          note="a bounce with no readable reason: still a bounce")
    plain("biglobe_mailbox_full.eml", "soft_bounce", "mailbox_full", sender="Mail Administrator <postmaster@biglobe.ne.jp>", subject="Returned mail: see transcript",
          body="   ----- The following addresses had delivery problems -----\nhana@biglobe.ne.jp\n\n   ----- Non-delivered information -----\nThe number of messages in recipient's mailbox exceeded the local limit.")
    plain("softbank_unknown_user.eml", "hard_bounce", "user_unknown", sender="MAILER-DAEMON@i.softbank.jp", subject="Undeliverable Message",
          body="Unknown user: ichi@i.softbank.jp")
    plain("ses_plain_error.eml", "hard_bounce", "user_unknown", sender="MAILER-DAEMON@amazonses.com", subject="Delivery Status Notification (Failure)",
          body="An error occurred while trying to deliver the mail to the following recipients:\njun@customer.example\n550 5.1.1 user unknown")
    # the patterns: MAILER-DAEMON <> without an address, a bounce sender with nothing readable
    plain("mailer_daemon_empty_address.eml", "hard_bounce", "user_unknown", sender="MAILER-DAEMON <>", subject="failure notice", return_path=None,
          body="Your message to <kit@customer.example> could not be delivered: 550 5.1.1 no such user",
          note="From: MAILER-DAEMON <> with no Return-Path")
    plain("mailer_daemon_empty_unreadable.eml", "hard_bounce", "unknown", sender="MAILER-DAEMON <>", subject="failure notice", return_path=None,
          headers="Auto-Submitted: auto-replied\n", body="Message could not be processed.")
    plain("postmaster_nothing_parsed.eml", "hard_bounce", "unknown", sender="postmaster@bigisp.example", subject="Message status",
          headers="Auto-Submitted: auto-replied\n", body="<html><body>Your message could not be handled.</body></html>")
    plain("mailer_daemon_german.eml", "hard_bounce", "user_unknown", sender="MAILER-DAEMON@mx.firma.example", subject="Unzustellbar: Quick question",
          body="Ihre Nachricht konnte nicht zugestellt werden an:\n\n<lars@firma.example>: 550 5.1.1 Benutzer unbekannt")
    plain("mail_delivery_system_noreply.eml", "hard_bounce", "user_unknown", sender="Mail Delivery System <noreply@relay.example>",
          subject="Undelivered message", return_path="<noreply@relay.example>",
          body="Delivery to <nils@customer.example> failed: 550 5.1.1 mailbox does not exist",
          note="a bounce sender by display name with an ordinary address")
    # provider JSON carried in mail
    def sns(inner: dict) -> str:
        return json.dumps({"Type": "Notification", "MessageId": "22b80b92-fdea-4c2c-8f9d-bdfb0c7bf324",
                           "TopicArn": "arn:aws:sns:eu-west-1:123456789012:ses-bounces", "Message": json.dumps(inner),
                           "Timestamp": "2026-12-03T10:41:00.000Z", "SignatureVersion": "1"}, indent=2)
    ses_b = lambda btype, sub, rcpt, status, diag: {"notificationType": "Bounce", "bounce": {"bounceType": btype, "bounceSubType": sub, "bouncedRecipients": [{"emailAddress": rcpt, **({"status": status} if status else {}), **({"diagnosticCode": diag} if diag else {})}], "timestamp": "2026-12-03T10:41:00.000Z", "feedbackId": "0102-abc"}, "mail": {"source": OURS, "messageId": "0102-msg", "destination": [rcpt]}}
    plain("ses_sns_permanent.eml", "hard_bounce", "user_unknown", sender="AWS Notifications <no-reply@sns.amazonaws.com>", subject="AWS Notification Message", return_path=None,
          body=sns(ses_b("Permanent", "General", "mo@customer.example", "5.1.1", "smtp; 550 5.1.1 user unknown")))
    plain("ses_sns_transient_full.eml", "soft_bounce", "mailbox_full", sender="AWS Notifications <no-reply@sns.amazonaws.com>", subject="AWS Notification Message", return_path=None,
          body=sns(ses_b("Transient", "MailboxFull", "nan@customer.example", "4.2.2", "smtp; 452 4.2.2 mailbox full")))
    plain("ses_raw_noemail.eml", "hard_bounce", "user_unknown", sender="no-reply@amazonses.example", subject="Amazon SES Email Event Notification", return_path=None,
          body=json.dumps(ses_b("Permanent", "NoEmail", "oli@customer.example", "5.1.1", "smtp; 550 5.1.1 no such user")))
    plain("ses_sns_suppressed.eml", "hard_bounce", "blocked", sender="AWS Notifications <no-reply@sns.amazonaws.com>", subject="AWS Notification Message", return_path=None,
          body=sns(ses_b("Permanent", "Suppressed", "pax@customer.example", None, "Amazon SES has suppressed sending to this address because it has a recent history of bouncing")))
    sg = lambda events: json.dumps(events, indent=2)
    plain("sendgrid_event_bounce.eml", "hard_bounce", "user_unknown", sender="SendGrid Events <events@sendgrid.example>", subject="SendGrid event", return_path=None,
          body=sg([{"email": "rex@customer.example", "event": "bounce", "type": "bounce", "status": "5.1.1", "reason": "550 5.1.1 The email account that you tried to reach does not exist", "timestamp": 1796294460}]))
    plain("sendgrid_event_deferred.eml", "soft_bounce", "throttled", sender="SendGrid Events <events@sendgrid.example>", subject="SendGrid event", return_path=None,
          body=sg([{"email": "sol@customer.example", "event": "deferred", "response": "421 4.7.0 Too many connections, try again later", "attempt": "3", "timestamp": 1796294460}]))
    plain("sendgrid_event_blocked.eml", "hard_bounce", "blocked", sender="SendGrid Events <events@sendgrid.example>", subject="SendGrid event", return_path=None,
          body=sg([{"email": "tia@customer.example", "event": "bounce", "type": "blocked", "status": "5.7.1", "reason": "554 5.7.1 Service unavailable; Client host blocked using zen.spamhaus.org", "timestamp": 1796294460}]))
    # forwarded by a person
    plain("forwarded_sendmail_inline.eml", "hard_bounce", "user_unknown", sender="Anna Assistant <anna@agency.example>",
          subject="Fwd: Returned mail: see transcript for details", return_path="<anna@agency.example>",
          body="FYI, this one bounced.\n\n---------- Forwarded message ---------\nFrom: Mail Delivery Subsystem <MAILER-DAEMON@old.example>\nSubject: Returned mail: see transcript for details\n\nThe original message was received at Thu, 3 Dec 2026 10:40:01 GMT\n\n   ----- Transcript of session follows -----\n<<< 550 5.1.1 <ugo@old.example>... User unknown\n550 5.1.1 ugo@old.example... User unknown")
    inner = (HERE / "o365_recipient_not_found.eml").read_text()
    write("forwarded_o365_attached.eml", "hard_bounce", "user_unknown",
          "From: Ben Boss <ben@agency.example>\nTo: sales@bounces.test\nSubject: FW: Undeliverable: Quick question\n"
          "Message-ID: <fwd.1@agency.example>\nMIME-Version: 1.0\nContent-Type: multipart/mixed; boundary=\"FF\"\n\n"
          "--FF\nContent-Type: text/plain\n\nSee below, address is dead.\n\n--FF\nContent-Type: message/rfc822\n\n" + inner.replace("\r\n", "\n") + "\n--FF--\n",
          "the bounce attached to a person's forward")
    plain("forwarded_exim_inline.eml", "hard_bounce", "user_unknown", sender="Cleo <cleo@agency.example>",
          subject="Fwd: Mail delivery failed: returning message to sender", return_path="<cleo@agency.example>",
          body="Bounced again?\n\n-------- Forwarded Message --------\n" + ex_head + "  vera@customer.example\n    SMTP error from remote mail server after RCPT TO:<vera@customer.example>:\n    550 5.1.1 User unknown")

    # -- complaints (15) -------------------------------------------------------------------------
    def arf(name: str, ftype: str | None, *, sender: str = "Yahoo! Mail AntiSpam Feedback <feedback@arf.mail.yahoo.com>",
            outer: str = "multipart/report; report-type=feedback-report", extra: str = "", rcpt: str = "lead@customer.example",
            headers_only: bool = False, reason: str | None = None) -> None:
        fields = "" if ftype is None else f"Feedback-Type: {ftype}\n"
        fields += f"User-Agent: SomeGenerator/1.0\nVersion: 1\nOriginal-Mail-From: <{OURS}>\nOriginal-Rcpt-To: <{rcpt}>\nArrival-Date: Thu, 3 Dec 2026 10:40:01 +0000\nSource-IP: 192.0.2.1\n"
        original = ORIGINAL.format(rcpt=rcpt, n=name)
        otype = "message/rfc822"
        if headers_only:
            original, otype = original.split("\n\n", 1)[0] + "\n", "text/rfc822-headers"
        raw = (f"From: {sender}\nTo: abuse@bounces.test\nSubject: FW: Quick question\nDate: Thu, 3 Dec 2026 11:00:00 +0000\n"
               f"Message-ID: <arf.{name}@feedback.example>\n{extra}MIME-Version: 1.0\nContent-Type: {outer}; boundary=\"AA\"\n\n"
               "--AA\nContent-Type: text/plain\n\nThis is an email abuse report for an email message received from IP 192.0.2.1.\n\n"
               f"--AA\nContent-Type: message/feedback-report\n\n{fields}\n--AA\nContent-Type: {otype}\n\n{original}\n--AA--\n")
        write(name, "complaint", reason or (ftype or "abuse"), raw)
    arf("arf_rfc5965_abuse.eml", "abuse")
    arf("arf_aol_abuse.eml", "abuse", sender="scomp@aol.net", extra="Auto-Submitted: auto-generated\n")
    arf("arf_fraud.eml", "fraud")
    arf("arf_virus.eml", "virus")
    arf("arf_other.eml", "other")
    arf("arf_headers_only.eml", "abuse", headers_only=True)
    arf("arf_missing_feedback_type.eml", None, reason="abuse")
    arf("arf_outlook_multipart_mixed.eml", "abuse", sender="staff@hotmail.com", outer="multipart/mixed")
    arf("arf_opt_out_auto_submitted.eml", "opt-out", sender="fbl@isp.example", extra="Auto-Submitted: auto-generated\n")
    arf("arf_opt_out_mixed_auto_submitted.eml", "opt-out", sender="fbl@isp.example", outer="multipart/mixed",
        extra="Auto-Submitted: auto-replied\n")
    arf("arf_comcast_feedbackloop.eml", "abuse", sender="feedbackloop@comcastfbl.example", extra="Auto-Submitted: auto-generated\nPrecedence: bulk\n")
    write("arf_report_as_text_plain.eml", "complaint", "abuse",
          "From: fbl@smallisp.example\nTo: abuse@bounces.test\nSubject: Abuse report\nMessage-ID: <fbl.2@smallisp.example>\n"
          "Auto-Submitted: auto-generated\nMIME-Version: 1.0\nContent-Type: multipart/report; report-type=feedback-report; boundary=\"TT\"\n\n"
          "--TT\nContent-Type: text/plain\n\nA user reported this message.\n\n--TT\nContent-Type: text/plain\n\n"
          "Feedback-Type: abuse\nUser-Agent: SmallFBL/0.1\nVersion: 1\nOriginal-Rcpt-To: <oz@smallisp.example>\n\n"
          "--TT\nContent-Type: message/rfc822\n\n" + ORIGINAL.format(rcpt="oz@smallisp.example", n="fbltext") + "\n--TT--\n",
          "the report part sent as text/plain")
    write("jmrp_hotmail.eml", "complaint", "abuse",
          "From: staff@hotmail.com\nTo: jmrp@bounces.test\nSubject: complaint about message from 192.0.2.1\nMessage-ID: <jmrp.1@hotmail.com>\n"
          "MIME-Version: 1.0\nContent-Type: multipart/mixed; boundary=\"JJ\"\n\n--JJ\nContent-Type: text/plain\n\n"
          "This is an email abuse report for an email message received from IP 192.0.2.1 on Thu, 03 Dec 2026 10:40:01 -0800.\n"
          "For more information about this format please see http://postmaster.live.com/.\n\n--JJ\nContent-Type: message/rfc822\n\n"
          "X-HmXmrOriginalRecipient: <wren@hotmail.com>\n" + ORIGINAL.format(rcpt="wren@hotmail.com", n="jmrp") + "\n--JJ--\n")
    ses_c = {"notificationType": "Complaint", "complaint": {"complainedRecipients": [{"emailAddress": "yve@customer.example"}], "complaintFeedbackType": "abuse", "timestamp": "2026-12-03T11:00:00.000Z", "feedbackId": "0102-c"}, "mail": {"source": OURS}}
    plain("ses_sns_complaint.eml", "complaint", "abuse", sender="AWS Notifications <no-reply@sns.amazonaws.com>", subject="AWS Notification Message", return_path=None, body=sns(ses_c))
    plain("ses_raw_complaint.eml", "complaint", "abuse", sender="no-reply@amazonses.example", subject="Amazon SES Email Event Notification", return_path=None, body=json.dumps(ses_c))
    plain("sendgrid_event_spamreport.eml", "complaint", "abuse", sender="SendGrid Events <events@sendgrid.example>", subject="SendGrid event", return_path=None,
          body=sg([{"email": "zia@customer.example", "event": "spamreport", "timestamp": 1796294460}]))

    # -- not bounces, not complaints (false-positive checks) --------------------------------------
    human = "Lead Person <lead@customer.example>"
    plain("human_reply_plain.eml", "human_reply", "", sender=human, subject="Re: Quick question", return_path="<lead@customer.example>",
          body="Hi, sounds interesting. Can we talk on Tuesday?\n\nBest, Lead")
    plain("human_mentions_undeliverable.eml", "human_reply", "", sender=human, subject="Re: Quick question", return_path="<lead@customer.example>",
          body="Your mail to my colleague bob@customer.example was undeliverable, he left. Please write to carol@customer.example instead; the message could not be delivered to him.")
    plain("human_subject_delivery_problems.eml", "human_reply", "", sender=human, subject="Re: Delivery problems with your last order?", return_path="<lead@customer.example>",
          body="No, the parcel arrived. The earlier mail could not be delivered because of our firewall, fixed now.")
    plain("human_forward_to_colleague.eml", "human_reply", "", sender=human, subject="Fwd: Quick question", return_path="<lead@customer.example>",
          body="Adding my colleague who handles this.\n\n---------- Forwarded message ---------\nFrom: Sales <sales@bounces.test>\nSubject: Quick question\n\nHello, this is step 1.")
    plain("human_says_bounced.eml", "human_reply", "", sender=human, subject="Re: Quick question", return_path="<lead@customer.example>",
          body="Your previous email bounced from my old address, use this one.")
    plain("unsubscribe_reply.eml", "unsubscribe_request", "", sender=human, subject="Re: Quick question", return_path="<lead@customer.example>",
          body="Please remove me from your list.")
    plain("ooo_en_null_path.eml", "auto_reply", "", sender=human, subject="Out of Office: Quick question", headers="Auto-Submitted: auto-replied\n",
          body="I am out of the office until Monday with limited access to email.", note="RFC 3834: null Return-Path is normal for auto-replies")
    plain("ooo_de.eml", "auto_reply", "", sender=human, subject="Abwesenheitsnotiz: Quick question", return_path="<lead@customer.example>",
          body="Vielen Dank für Ihre Nachricht. Ich bin bis 10.12. nicht im Büro.")
    plain("ooo_fr.eml", "auto_reply", "", sender=human, subject="Réponse automatique : Quick question", return_path="<lead@customer.example>",
          headers="Auto-Submitted: auto-replied\n", body="Je suis absent du bureau jusqu'au lundi.")
    plain("ooo_es.eml", "auto_reply", "", sender=human, subject="=?UTF-8?Q?Respuesta_autom=C3=A1tica:_Quick_question?=", return_path="<lead@customer.example>",
          body="Estoy fuera de la oficina hasta el lunes.")
    plain("ooo_nl.eml", "auto_reply", "", sender=human, subject="Automatisch antwoord: Quick question", return_path="<lead@customer.example>",
          body="Ik ben afwezig tot maandag.")
    plain("ooo_ja_header_only.eml", "auto_reply", "", sender=human, subject="=?UTF-8?B?6Ieq5YuV5b+c562U?=", headers="Auto-Submitted: auto-replied\n",
          body="ただいま不在にしております。")
    plain("exchange_automatic_reply.eml", "auto_reply", "", sender=human, subject="Automatic reply: Quick question", return_path="<lead@customer.example>",
          headers="X-Auto-Response-Suppress: All\nX-MS-Exchange-Inbox-Rules-Loop: lead@customer.example\n", body="I'm on leave until January.")
    plain("gmail_vacation.eml", "auto_reply", "", sender=human, subject="Re: Quick question", return_path="<lead@customer.example>",
          headers="Auto-Submitted: auto-replied\n", body="Thanks for your email. I'm travelling and will reply next week.")
    plain("ticket_auto_ack.eml", "auto_reply", "", sender="Support <support@customer.example>", subject="[Ticket #4711] Quick question", return_path="<support@customer.example>",
          headers="Auto-Submitted: auto-generated\n", body="Your request has been received and will be answered shortly.")
    plain("noreply_notice.eml", "auto_reply", "", sender="no-reply@customer.example", subject="Your message was received", return_path="<no-reply@customer.example>",
          body="This mailbox is not monitored.")
    dsn("dsn_delivered_only.eml", "auto_reply", "", sender=pf, subject="Successful Mail Delivery Report",
        human="This is the mail system at host mx.remote.example.\n\nYour message was successfully delivered to the destination(s) listed below.",
        recipients=[("amy@customer.example", "delivered", "2.0.0", "250 2.0.0 Ok: queued")])
    dsn("dsn_relayed_only.eml", "auto_reply", "", sender=pf, subject="Delivery Status Notification (Relay)",
        human="Your message was relayed to a system that does not send notifications.",
        recipients=[("bo@customer.example", "relayed", "2.0.0", None)])
    arf("arf_not_spam.eml", "not-spam")
    ROWS[-1] = (ROWS[-1][0], "auto_reply", "", "not-spam feedback is a notice")
    arf("arf_auth_failure.eml", "auth-failure")
    ROWS[-1] = (ROWS[-1][0], "auto_reply", "", "RFC 6591 DMARC failure report")
    plain("ses_delivery_notice.eml", "auto_reply", "", sender="AWS Notifications <no-reply@sns.amazonaws.com>", subject="AWS Notification Message", return_path=None,
          body=sns({"notificationType": "Delivery", "delivery": {"recipients": ["cat@customer.example"], "smtpResponse": "250 2.0.0 OK"}}))


CAPTURED = [
    ("postfix_local_user_unknown.eml", "hard_bounce", "user_unknown", "real Postfix, local(8) unknown user"),
    ("postfix_local_mailbox_full.eml", "hard_bounce", "mailbox_full", "real Postfix, mailbox_size_limit exceeded (5.2.2: hard by the code)"),
    ("postfix_relay_unknown.eml", "hard_bounce", "user_unknown", "real Postfix relaying to an SMTP server answering 550 5.1.1"),
    ("postfix_relay_full.eml", "soft_bounce", "mailbox_full", "real Postfix: 452 4.2.2 deferred, returned at queue lifetime 0 as Action failed Status 4.2.2"),
    ("postfix_relay_blocked.eml", "hard_bounce", "blocked", "real Postfix relaying to a server answering 554 5.7.1 (Spamhaus wording)"),
    ("postfix_relay_dmarc.eml", "hard_bounce", "policy", "real Postfix relaying to a server answering 550 5.7.26 (DMARC)"),
]

if __name__ == "__main__":
    build()
    with (HERE / "manifest.csv").open("w", newline="") as out:
        writer = csv.writer(out)
        writer.writerow(["file", "kind", "reason", "note"])
        writer.writerows(CAPTURED + sorted(ROWS))
    print(f"{len(ROWS) + len(CAPTURED)} messages")
