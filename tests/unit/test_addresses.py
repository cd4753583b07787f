import pytest
from stellar_sdk import Keypair, MuxedAccount

from common.addresses import normalize_account_input
from common.domain import InvalidInput

pytestmark = pytest.mark.unit


def _flip_last(text: str) -> str:
    return text[:-1] + ("B" if text[-1] != "B" else "C")


def test_g_and_muxed_accounts():
    kp = Keypair.random()
    assert normalize_account_input(kp.public_key) == kp.public_key
    assert normalize_account_input(f"  {kp.public_key}\n") == kp.public_key
    assert normalize_account_input(MuxedAccount(kp.public_key, 2**63).account_muxed) == kp.public_key


@pytest.mark.parametrize(
    "make, code",
    [
        (lambda kp: kp.secret, "wrong_key_kind"),
        (lambda kp: "C" + kp.public_key[1:], "wrong_key_kind"),
        (lambda kp: _flip_last(kp.public_key), "invalid_checksum"),
        (lambda kp: _flip_last(MuxedAccount(kp.public_key, 1).account_muxed), "invalid_checksum"),
        (lambda kp: "", "missing_account"),
        (lambda kp: "   ", "missing_account"),
        (lambda kp: None, "missing_account"),
        (lambda kp: "G" * 10_000, "input_too_long"),
        (lambda kp: "' OR 1=1 --", "invalid_account"),
        (lambda kp: "<script>alert(1)</script>", "invalid_account"),
        (lambda kp: 12345, "invalid_account"),
    ],
)
def test_refusals_are_specific_and_never_echo_the_input(make, code):
    kp = Keypair.random()
    raw = make(kp)
    with pytest.raises(InvalidInput) as info:
        normalize_account_input(raw)
    assert info.value.code == code and info.value.field == "account"
    if isinstance(raw, str) and raw.strip():
        assert raw.strip() not in info.value.message
    assert kp.secret not in info.value.message
