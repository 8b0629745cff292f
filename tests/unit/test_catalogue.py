"""The prompt catalogue carries the exact SPEC.md wording (R2, R4-R11)."""
import tomllib
from pathlib import Path

CATALOGUE = Path(__file__).resolve().parents[2] / "recordings" / "prompts" / "catalogue.toml"


def test_spec_wording_is_verbatim():
    prompts = tomllib.loads(CATALOGUE.read_text(encoding="utf-8"))["prompts"]
    assert prompts["greeting"] == "您好，{company}，{agent_no}号为您服务，请问有什么可以帮到您？"  # R2
    assert prompts["closing"] == "感谢您的来电，再见！"  # R4
    assert prompts["closing_callback"] == "{title}，我们的工作人员会尽快给您回复的，感谢您的来电，再见！"  # R4
    assert prompts["thanks_reply"] == "不用客气，感谢您的来电，再见"  # R5
    assert prompts["silent_goodbye"] == "对不起，您的电话没有声音，请您换一个电话再打过来，再见！"  # R6
    assert prompts["noisy_louder"] == "对不起，先生/女士，您的电话听不清楚，请您大点声，好吗？"  # R7
    assert prompts["noisy_goodbye"] == "对不起，先生/女士，您的电话听不清楚，请您换个电话再打过来，再见！"  # R7
    assert prompts["quiet_louder"] == "对不起，请您大声些，好吗？"  # R8
    assert prompts["wrong_number"] == "对不起，这里是{company}，请您查正后再拨。再见。"  # R9
    assert prompts["please_wait"] == "请稍等" and prompts["sorry_wait"] == "对不起，让您久等了"  # R10
    assert prompts["confirm_intro"] == "您好，与您核对信息，请您确认"  # R11
