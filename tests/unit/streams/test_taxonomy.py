"""A team's own taxonomy file: categories, routes, policy, brand; refused when it is wrong."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest

from streams.errors import ModelMismatchError
from streams.models import trained
from streams.models.local import LocalModels
from streams.settings import Settings
from streams.stages.inline import Inline
from streams.taxonomy import SAMPLE, TaxonomyError, categories_section, load_taxonomy
from tests import samples
from tests.cli import run_cli
from tests.taxonomies import write
from topics import catalog
from topics.codec import Codec

QUEUES = """
[[categories]]
name = "Billing and Payments"
description = "invoices, charges and refunds"

[[categories]]
name = "Technical Support"
description = "something does not work"
route = "tech"

[[categories]]
name = "Returns and Exchanges"
description = "sending a product back"
route = "tech"

[escalation]
confidence_floor = 0.0
always_human = ["Returns and Exchanges"]

[company]
name = "Acme"
support_address = "help@acme.example"
"""


def test_the_sample_taxonomy_is_the_default_and_derives_the_default_routes() -> None:
    taxonomy = load_taxonomy()
    assert taxonomy.path == SAMPLE
    assert taxonomy.names == catalog.CATEGORIES
    assert taxonomy.routes == catalog.CATEGORIES


def test_routes_come_from_the_file_and_other_always_exists(tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path, config=write(tmp_path, QUEUES))
    taxonomy = settings.taxonomy
    assert taxonomy.routes == ("billing_and_payments", "tech")
    assert taxonomy.route_of("Returns and Exchanges") == "tech"
    assert taxonomy.route_of("Human Resources") == "other"  # no route: other, never lost
    catalog.configure_routes(taxonomy.routes)
    names = {t.name for t in catalog.all_topics(settings.retry_tiers)}
    assert {
        "emails.route.billing_and_payments",
        "emails.route.tech",
        "emails.route.other",
    } <= names
    assert "emails.route.billing" not in names
    assert catalog.stage("extract").inputs == catalog.ROUTE_TOPICS


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (
            "[[categories]]\nname = 'a'\n[escalation]\nconfidence_floor = 1.5\n",
            "escalation.confidence_floor: Input should be less than or equal to 1",
        ),
        (
            "[[categories]]\nname = 'a'\nroute = 'Not A Topic!'\n",
            "categories.0: route 'Not A Topic!' of 'a' must be lower-case",
        ),
        (
            "[[categories]]\nname = 'a'\n[[categories]]\nname = 'a'\n",
            "categories: a declared twice",
        ),
        (
            "[[categories]]\nname = 'a'\n[escalation]\nalways_human = ['b']\n",
            "always_human names ['b'], which are not categories",
        ),
        ("categories = []\n", "categories: Tuple should have at least 1 item"),
        (
            "[[categories]]\nname = 'a'\ncolour = 'red'\n",
            "categories.0.colour: Extra inputs are not permitted",
        ),
        ("[[categories]\nname = 'a'\n", "not valid TOML"),
        (
            "[[categories]]\nname = 'a'\n[brand]\ngreeting = 'Hi {first_name},'\n",
            "greeting may hold only {customer_name}",
        ),
        (  # a width applied to whatever name an email gives
            "[[categories]]\nname = 'a'\n[brand]\ngreeting = 'Hi {customer_name:>999999999},'\n",
            "greeting may hold only {customer_name} (found {customer_name:>999999999})",
        ),
        (
            "[[categories]]\nname = 'a'\n[brand]\ngreeting = 'Hi {customer_name.upper},'\n",
            "(found {customer_name.upper})",
        ),
    ],
)
def test_a_bad_file_is_refused_with_the_field_and_what_is_wrong(
    tmp_path: Path, text: str, message: str
) -> None:
    path = write(tmp_path, text)
    with pytest.raises(TaxonomyError) as caught:
        Settings(data_dir=tmp_path, config=path)
    assert str(path) in str(caught.value)
    assert message in str(caught.value)


def test_a_missing_file_is_refused(tmp_path: Path) -> None:
    with pytest.raises(TaxonomyError, match="no such file"):
        Settings(config=tmp_path / "nope.toml")


def test_the_cli_refuses_a_bad_file_at_start_in_one_line(tmp_path: Path) -> None:
    path = write(tmp_path, "[[categories]]\nname = 'a'\n[escalation]\nrefund_limit = -3\n")
    env = {**os.environ, "MAILROOM_CONFIG": str(path), "MAILROOM_DATA_DIR": str(tmp_path)}
    run = run_cli("topics", "create", env=env)
    assert run.returncode == 2
    assert "Traceback" not in run.stderr
    assert "escalation.refund_limit: Input should be greater than or equal to 0" in run.stderr


def test_endpoints_and_chains_may_live_in_the_file_and_the_environment_overrides(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = write(
        tmp_path,
        QUEUES
        + '\n[endpoints.gpt]\nbase_url = "http://127.0.0.1:9/v1"\nmodel = "m"\n'
        + '[chains]\ngenerate = ["gpt", "local"]\n',
    )
    settings = Settings(config=path)
    assert settings.chain("generate") == ("gpt", "local")
    assert settings.endpoints["gpt"].model == "m"
    monkeypatch.setenv("MAILROOM_MODELS", '{"generate": ["local"]}')
    assert Settings(config=path).chain("generate") == ("local",)


def test_a_categories_section_for_a_new_label_set_loads_as_a_taxonomy(tmp_path: Path) -> None:
    section = categories_section(["card_arrival", "Billing and Payments", 'say "hi"'])
    taxonomy = load_taxonomy(write(tmp_path, section))
    assert taxonomy.names == ("card_arrival", "Billing and Payments", 'say "hi"')
    assert taxonomy.routes == ("card_arrival", "billing_and_payments", "say_hi")


def test_any_label_a_team_has_is_written_so_that_it_loads(tmp_path: Path) -> None:
    """A label with a line break or a control character was written as TOML that
    load_taxonomy refused; labels of one slug shared one route."""
    labels = ["refund\nrequest", "tab\there", "del\x7f", "ctrl\x01", "Billing", "billing!", "ünï"]
    taxonomy = load_taxonomy(write(tmp_path, categories_section(labels)))
    assert taxonomy.names == tuple(labels)
    assert taxonomy.routes[4:] == ("billing", "billing_2", "uni")
    assert len(set(taxonomy.routes)) == len(labels)


def test_a_label_that_cannot_name_a_category_is_refused_before_a_file_is_written() -> None:
    with pytest.raises(TaxonomyError, match=r"cannot name a category: .*at most 100 characters"):
        categories_section(["billing", "x" * 101])


def rows(labels: list[str]) -> list[tuple[str, str]]:
    texts = {
        "Billing and Payments": [
            "charged twice on my invoice",
            "refund the payment",
            "wrong bill amount",
        ],
        "Technical Support": [
            "the app crashes on start",
            "error 500 on login page",
            "sync is broken",
        ],
        "Returns and Exchanges": [
            "send the printer back",
            "exchange the broken item",
            "return label",
        ],
        "Sales": ["price for 20 seats", "talk to sales", "discount for schools"],
    }
    return [(f"{t} {n}", label) for label in labels for n in range(4) for t in texts[label]]


def test_a_worker_refuses_a_model_whose_labels_are_not_the_taxonomys(tmp_path: Path) -> None:
    taxonomy = load_taxonomy(write(tmp_path, QUEUES))
    model, _ = trained.train(tmp_path, rows(["Billing and Payments", "Technical Support", "Sales"]))
    models = LocalModels(tmp_path, taxonomy, model.id)
    with pytest.raises(ModelMismatchError) as caught:
        _ = models.classifier
    assert "predicts labels" in str(caught.value)
    assert "Sales" in str(caught.value)
    assert "never predicts: Returns and Exchanges" in str(caught.value)


def test_the_built_in_classifier_is_refused_for_other_categories(tmp_path: Path) -> None:
    models = LocalModels(tmp_path, load_taxonomy(write(tmp_path, QUEUES)))
    with pytest.raises(ModelMismatchError, match="the built-in classifier predicts labels"):
        _ = models.classifier


async def test_a_trained_model_and_the_taxonomy_route_and_escalate_an_email(
    tmp_path: Path,
) -> None:
    labels = ["Billing and Payments", "Technical Support", "Returns and Exchanges"]
    model, _ = trained.train(tmp_path, rows(labels))
    settings = Settings(
        data_dir=tmp_path, tracing=False, config=write(tmp_path, QUEUES), classifier=model.id
    )
    pipeline = Inline(settings)

    async def outcome(n: int, subject: str, body: str) -> tuple[list[str], dict[str, Any]]:
        email: Any = samples.email(
            n, subject=subject, body_text=body, body_html=None, attachments=[]
        )
        written = await pipeline.run(email)
        (last,) = [o for o in written if o.topic == catalog.ESCALATIONS]
        return [o.topic for o in written], Codec("Escalation").decode(last.value)

    topics, escalation = await outcome(1, "Broken", "The app crashes on start with error 500.")
    assert "emails.route.tech" in topics  # the category's route, from the file
    assert escalation["category"] == "Technical Support"
    # No knowledge base and no LLM: nothing vetted to answer with, so a person writes.
    assert escalation["reason"] == "no_grounded_answer"
    topics, escalation = await outcome(2, "Return label", "Please send me a return label.")
    assert "emails.route.critical" in topics  # always_human: straight to a person
    assert "emails.extracted" not in topics  # no model spent on a reply
    assert escalation["category"] == "Returns and Exchanges"
    assert escalation["reason"] == "policy_category"


def test_the_readmes_example_taxonomy_loads(tmp_path: Path) -> None:
    readme = (Path(__file__).resolve().parents[3] / "README.md").read_text()
    example = readme.split("```toml\n", 1)[1].split("```", 1)[0]
    taxonomy = load_taxonomy(write(tmp_path, example))
    assert taxonomy.names == ("Billing and Payments", "Legal")
    assert taxonomy.escalation.always_human == ("Legal",)
    assert taxonomy.chains == {"generate": ("gpt", "local")}


def test_a_category_name_of_another_script_gets_a_route_of_its_own_or_is_refused(
    tmp_path: Path,
) -> None:
    """請求 and 技術 were both routed with the catch-all, other; Rückerstattung went to
    r_ckerstattung."""
    folded = load_taxonomy(write(tmp_path, '[[categories]]\nname = "Rückerstattung"\n'))
    assert folded.routes == ("ruckerstattung",)
    with pytest.raises(TaxonomyError, match=r"'請求' has no letter a-z or digit.*give it one"):
        load_taxonomy(write(tmp_path, '[[categories]]\nname = "請求"\n'))
    named = load_taxonomy(write(tmp_path, '[[categories]]\nname = "請求"\nroute = "billing"\n'))
    assert named.route_of("請求") == "billing"


@pytest.mark.parametrize(
    ("content", "says"),
    [
        ("x = " + "[" * 3000 + "]" * 3000 + "\n", "not valid TOML"),
        ("[escalation]\nrefund_limit = " + "9" * 5000 + "\n", "not valid TOML"),
        ('[kb]\nsource = "kb\\u0000"\n', "kb: source: a path cannot hold a NUL"),
    ],
)
def test_a_file_that_cannot_be_used_is_refused_not_a_traceback(
    tmp_path: Path, content: str, says: str
) -> None:
    with pytest.raises(TaxonomyError, match=says):
        load_taxonomy(write(tmp_path, content + '[[categories]]\nname = "billing"\n'))


def test_a_config_path_that_cannot_be_a_file_is_refused(tmp_path: Path) -> None:
    (tmp_path / "loop.toml").symlink_to(tmp_path / "loop.toml")
    with pytest.raises(TaxonomyError, match=r"loop\.toml: .*loop"):
        load_taxonomy(tmp_path / "loop.toml")
    (tmp_path / "file").write_text("")
    with pytest.raises(TaxonomyError, match="no such file"):
        load_taxonomy(tmp_path / "file" / "mailroom.toml")
