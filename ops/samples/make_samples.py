"""Write mailroom's own labelled sample emails (training set and demo set), reproducibly.

    python ops/samples/make_samples.py     # rewrites processors/data/*.jsonl

Everything here was written for this project: phrase banks per category, combined with a
fixed seed into varied emails. Labels: category (billing, technical, account,
feature_request, other) and the urgency the text was written to carry.
"""

from __future__ import annotations

import json
import random
from pathlib import Path

OUT = Path(__file__).resolve().parents[2] / "processors" / "data"

NAMES = [
    "Ana Ruiz",
    "Bo Chen",
    "Carla Weiss",
    "Dev Patel",
    "Emeka Obi",
    "Fatima Khan",
    "Greg Olsen",
    "Hana Sato",
    "Ivan Petrov",
    "Julia Novak",
    "Kwame Mensah",
    "Lea Roux",
    "Marco Bianchi",
    "Nora Lind",
    "Omar Haddad",
    "Priya Nair",
    "Quinn Murphy",
    "Rosa Diaz",
    "Sam Taylor",
    "Tomas Kral",
    "Uma Iyer",
    "Victor Hugo",
    "Wen Li",
    "Yusuf Demir",
    "Zoe Martin",
]
GREETINGS = [
    "Hello,",
    "Hi there,",
    "Dear support team,",
    "Hi,",
    "Good morning,",
    "Hey,",
    "To whom it may concern,",
    "Dear Sir or Madam,",
    "",
]
CLOSINGS = [
    "Thanks,",
    "Thank you,",
    "Best regards,",
    "Kind regards,",
    "Cheers,",
    "Regards,",
    "Thanks in advance,",
    "",
]
PRODUCTS = [
    "the mobile app",
    "the web dashboard",
    "the desktop client",
    "the API",
    "the reporting module",
    "the sync service",
    "the browser extension",
    "the admin console",
    "the invoicing tool",
    "the calendar integration",
]
MONTHS = [
    "January",
    "February",
    "March",
    "April",
    "May",
    "June",
    "July",
    "August",
    "September",
    "October",
    "November",
    "December",
]

BILLING = [
    "I was charged twice for invoice {inv}. The amount of {amt} appears two times on my card.",
    "My subscription renewed at {amt} although I cancelled it on {date}.",
    "Could you send me a corrected invoice for {inv}? The VAT number is missing.",
    "I see an extra charge of {amt} on my statement that I do not recognise.",
    "Please refund the {amt} you took for the annual plan; I only wanted monthly billing.",
    "The payment for invoice {inv} failed but you still suspended the service.",
    "Why did my bill go up to {amt} this month? Nobody told me about a price change.",
    "I paid {amt} by bank transfer on {date} but the invoice {inv} still shows as unpaid.",
    "Your pricing page says {amt} per seat, but I was billed more than that.",
    "I need a receipt for the payment of {amt} made on {date} for my expense report.",
    "The discount code was not applied and I was charged the full {amt}.",
    "Please update the billing address on invoice {inv}, our company moved.",
    "I was promised a credit of {amt} after the downtime last month and never got it.",
    "Can I switch from credit card to invoice payment for the next renewal?",
    "You charged my old card ending {card4} even though I updated my payment method.",
    "I am writing regarding a billing discrepancy on our latest invoice {inv}.",
    "Our finance department noticed that the payment of {amt} was processed twice.",
    "Could you clarify the charges on our account statement for {date}?",
    "We would like to request a refund for the unused portion of our subscription.",
    "The invoice amount does not match the agreed contract price of {amt}.",
    "Please provide details about the payment options and billing cycle for our plan.",
    "We were billed for 20 licenses but only use 12; please adjust the invoice.",
    "I am reaching out about an unexpected fee of {amt} on our monthly bill.",
]
TECHNICAL = [
    "{product} crashes every time I try to export a report.",
    "Since the last update {product} will not load; it just shows a blank screen.",
    "I get error code {code} when I try to sync my files.",
    "Login works but {product} times out after a few seconds with a 504 error.",
    "The search in {product} returns no results even for items I can see in the list.",
    "Notifications stopped arriving on my phone after I upgraded {product}.",
    "Uploading attachments larger than 10 MB fails with a network error.",
    "{product} uses 100% CPU and my laptop fans never stop.",
    "The API returns HTTP 500 for the orders endpoint since this morning.",
    "Dark mode makes the text unreadable in {product}.",
    "Data I entered yesterday disappeared from {product} after a reload.",
    "The calendar integration creates duplicate events for every meeting.",
    "Two-factor codes from the authenticator are always rejected as invalid, the clock is right.",
    "The CSV import hangs at 99% and never finishes.",
    "Since version {version} the page freezes when I open the settings tab.",
    "I am writing to report that our server integration stopped working after the update.",
    "The database connection drops intermittently and our analytics platform shows errors.",
    "Our network firewall seems to block the software update; the installer fails.",
    "We are experiencing performance issues: the platform is very slow to process data.",
    "The security certificate on the portal expired and browsers show a warning.",
    "The VPN client disconnects every few minutes since we changed the router configuration.",
    "Our backup job fails at night with a storage quota error.",
    "The integration with our CRM software stopped syncing customer records.",
    "I am reaching out regarding a malfunction of the printer driver on several workstations.",
    "The cloud deployment fails with a configuration error in the build pipeline.",
    "Our data analytics dashboard shows incorrect numbers after the migration.",
    "Emails sent from the platform land in spam; SPF or DKIM may be misconfigured.",
    "Could you help us troubleshoot high memory usage on the application server?",
    "The software license server is unreachable so nobody can start the tool.",
    "Please investigate: the system logs show repeated authentication failures from the API.",
]
ACCOUNT = [
    "I cannot log in; the password reset email never arrives.",
    "Please change the email address on my account to {newmail}.",
    "My account {acct} was locked after too many attempts, can you unlock it?",
    "How do I delete my account and all my personal data?",
    "I want to transfer ownership of workspace {acct} to my colleague.",
    "Please close my account {acct}, I no longer need it.",
    "I need to add two more users to our team account.",
    "Someone changed my username without my permission.",
    "Can you merge my two accounts? I signed up twice by mistake.",
    "I lost access to my phone and cannot pass two-factor verification for account {acct}.",
    "Please update my company name and phone number in my profile.",
    "Why was my account {acct} suspended? I did not receive any warning.",
    "I would like to downgrade my account to the free tier.",
    "How can I export all of my account data before I leave?",
    "My verification email link says it has expired.",
]
FEATURE = [
    "It would be great if {product} supported exporting to PDF.",
    "Could you add a dark mode to {product}? My eyes would thank you.",
    "Please consider adding keyboard shortcuts for the most common actions.",
    "We would love an integration with our accounting software.",
    "A bulk edit option for tags would save our team hours every week.",
    "Is there any plan to support single sign-on with our identity provider?",
    "Suggestion: let us schedule reports to be emailed every Monday.",
    "It would help a lot if the dashboard could show data per region.",
    "Please add a way to archive old projects instead of deleting them.",
    "Would you consider an offline mode for {product}?",
    "Feature request: custom fields on the contact form.",
    "Could the mobile app get a home screen widget?",
    "I'd like to suggest multi-language support for the customer portal.",
    "Please allow more than five filters at the same time.",
    "An undo button for deleted items would be a real improvement.",
]
OTHER = [
    "Do you have an office in {city}? I would like to visit.",
    "I just wanted to say your support team was very helpful last week.",
    "Are you hiring? I would love to work on your product.",
    "Could you tell me which data centres you use for EU customers?",
    "Do you offer a discount for non-profit organisations?",
    "Can I get a copy of your security whitepaper?",
    "Who should I contact about a partnership proposal?",
    "What are your support hours during the holidays?",
    "I am writing an article about your company; could I interview someone?",
    "Is there a user conference this year?",
    "Your website has a typo on the about page.",
    "Do you have a reseller programme in {city}?",
    "I received a package addressed to your company by mistake.",
    "Can you recommend training material for new users?",
    "Where can I find your terms of service in German?",
    "I am interested in learning more about your services for marketing agencies.",
    "Could you send me information about your company and the products you offer?",
    "We are evaluating vendors and would like a general overview of your offering.",
    "I would like to know more about how you handle customer data and privacy.",
    "Can you share any case studies from customers in the retail sector?",
]
CATEGORY_BANKS = {
    "billing": BILLING,
    "technical": TECHNICAL,
    "account": ACCOUNT,
    "feature_request": FEATURE,
    "other": OTHER,
}
SUBJECTS = {
    "billing": [
        "Invoice question",
        "Double charge",
        "Refund request",
        "Billing issue",
        "Wrong amount on invoice {inv}",
        "Payment problem",
        "Subscription charge",
    ],
    "technical": [
        "App not working",
        "Error {code}",
        "Bug report",
        "Problem with {product}",
        "Crash on export",
        "Sync broken",
        "Technical issue",
    ],
    "account": [
        "Account access",
        "Cannot log in",
        "Change my email",
        "Close my account",
        "Account locked",
        "Profile update",
        "Two-factor problem",
    ],
    "feature_request": [
        "Feature request",
        "Suggestion",
        "Idea for {product}",
        "Would love this feature",
        "Product feedback",
    ],
    "other": ["Question", "Quick question", "General enquiry", "Hello", "Information request"],
}
DETAILS = [
    "This is the second time I am writing about this.",
    "I already tried logging out and back in.",
    "My colleague has the same problem.",
    "I have attached a screenshot.",
    "It started on {date}.",
    "Our account number is {acct}.",
    "",
    "",
    "",
]
URGENCY_ADDONS = {
    "critical": [
        "Our whole team is down and production is completely broken.",
        "If this is not fixed today I will contact my lawyer and take legal action.",
        "This is a data breach: I can see other customers' invoices.",
        "We have a complete outage affecting all of our customers right now.",
        "URGENT: OUR SYSTEM IS DOWN AND WE ARE LOSING MONEY EVERY MINUTE.",
    ],
    "high": [
        "I need this resolved by tomorrow, our audit deadline is on {date}.",
        "I will cancel my subscription if this is not sorted out this week.",
        "This is the third time I am contacting you and nobody has answered.",
        "Please treat this as urgent, it blocks our month-end close.",
    ],
    "medium": ["", "I would appreciate a reply soon."],
    "low": ["No rush, whenever you have time.", "Just curious, not urgent at all.", ""],
}


def fill(rng: random.Random, text: str) -> str:
    return text.format(
        inv=f"INV-{rng.randint(1000, 99999)}",
        amt=rng.choice(["$", "EUR ", "£"])
        + f"{rng.randint(5, 900)}.{rng.choice(['00', '99', '50'])}",
        date=f"{rng.randint(1, 28)} {rng.choice(MONTHS)}",
        card4=f"{rng.randint(1000, 9999)}",
        product=rng.choice(PRODUCTS),
        code=rng.choice(["E1023", "ERR_SYNC_42", "0x80070005", "403", "E-77"]),
        version=f"{rng.randint(2, 9)}.{rng.randint(0, 20)}",
        newmail=f"{rng.choice(['new', 'me', 'work'])}{rng.randint(1, 99)}@example.org",
        acct=f"ACC-{rng.randint(10000, 99999)}",
        city=rng.choice(["Berlin", "Lisbon", "Toronto", "Nairobi", "Osaka", "Austin"]),
    )


def email(rng: random.Random, n: int, category: str, urgency: str) -> dict[str, object]:
    name = rng.choice(NAMES)
    core = rng.sample(CATEGORY_BANKS[category], k=rng.choice([1, 1, 2]))
    parts = [
        rng.choice(GREETINGS),
        *(fill(rng, c) for c in core),
        fill(rng, rng.choice(DETAILS)),
        fill(rng, rng.choice(URGENCY_ADDONS[urgency])),
        rng.choice(CLOSINGS),
        name if rng.random() < 0.8 else "",
    ]
    body = "\n".join(p for p in parts if p)
    first = name.split()[0].lower()
    return {
        "message_id": f"<sample-{n:04d}@customers.example.com>",
        "sender": f"{first}.{rng.randint(1, 999)}@example.com",
        "subject": fill(rng, rng.choice(SUBJECTS[category])),
        "body_text": body,
        "category": category,
        "urgency": urgency,
    }


def dataset(seed: int, count: int, start: int = 0) -> list[dict[str, object]]:
    rng = random.Random(seed)
    categories = list(CATEGORY_BANKS)
    levels = ["critical"] * 1 + ["high"] * 3 + ["medium"] * 4 + ["low"] * 2
    return [
        email(rng, start + i, categories[i % len(categories)], rng.choice(levels))
        for i in range(count)
    ]


def write(path: Path, rows: list[dict[str, object]]) -> None:
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows))
    print(f"wrote {len(rows)} emails to {path}")


SPECIAL = [
    {
        "sender": "ana@example.com",
        "subject": "Automatic reply: Re: your ticket",
        "body_text": "I am out of the office until Monday.",
        "headers": {"Auto-Submitted": "auto-replied"},
    },
    {
        "sender": "MAILER-DAEMON@mx.example.com",
        "subject": "Undelivered Mail Returned to Sender",
        "body_text": "This is the mail system. Your message could not be delivered.",
    },
    {
        "sender": "news@vendor.example",
        "subject": "Our weekly digest",
        "body_text": "Ten tips for better spreadsheets.",
        "headers": {"List-Unsubscribe": "<mailto:unsubscribe@vendor.example>"},
    },
    {
        "sender": "prize@lucky.example",
        "subject": "Congratulations!",
        "body_text": "You have won! Click here to claim your prize. 100% guaranteed.",
    },
    {"sender": "bo@example.com", "subject": "Re: ticket", "body_text": "> quoted only\n> text"},
    {
        "sender": "cto@bigcustomer.example",
        "subject": "PRODUCTION DOWN",
        "body_text": "Our whole team is down and production is completely broken. Fix it now.",
    },
    {
        "sender": "legal@angry.example",
        "subject": "Final warning",
        "body_text": "You charged me twice again. My lawyer will take legal action this week.",
    },
    {
        "sender": "finance@corp.example",
        "subject": "Refund request",
        "body_text": "Please refund the $1,800.00 annual charge on INV-99120, we never used it.",
    },
]


def demo_set() -> list[dict[str, object]]:
    rows = dataset(seed=99, count=192, start=9000)
    for n, row in enumerate(SPECIAL):
        rows.append({"message_id": f"<special-{n}@customers.example.com>", **row})
    return rows


if __name__ == "__main__":
    write(OUT / "demo.jsonl", demo_set())
    write(OUT / "training.jsonl", dataset(seed=20261123, count=600))
    write(OUT / "holdout.jsonl", dataset(seed=7, count=150, start=5000))
