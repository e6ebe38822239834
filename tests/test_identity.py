"""亮身份, roster and privacy through the emulator: the whole life of a declaration."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator

import pytest
from sqlalchemy import select

from bot.services import chats as chat_service
from storage.models import Identity, IdentityDraft, Unit, User
from tests.emulator import BotAPIEmulator
from tests.harness import BotHarness

GROUP = -1003000000001
SECRETARY, DEPUTY, MEMBER, OTHER = 5001, 5002, 5003, 5004


@pytest.fixture
async def emulator() -> AsyncIterator[BotAPIEmulator]:
    async with BotAPIEmulator() as emu:
        emu.add_user(SECRETARY, "周", "书记")
        emu.add_user(DEPUTY, "吴", "委员")
        emu.add_user(MEMBER, "郑", "党员")
        emu.add_user(OTHER, "Olivia", language_code="en")
        emu.add_chat(GROUP, "supergroup", "智造园第一支部")
        emu.set_admins(GROUP, [DEPUTY], creator_id=SECRETARY)
        yield emu


@pytest.fixture
async def bot(emulator: BotAPIEmulator, database_url: str) -> AsyncIterator[BotHarness]:
    async with BotHarness(emulator, database_url) as harness:
        emulator.bot_added(GROUP, SECRETARY, status="administrator")
        emulator.send_message(DEPUTY, DEPUTY, "/start")  # the deputy can be reached in private
        await harness.settle()
        await emulator.wait_for_call("getChatAdministrators")
        await harness.settle()
        yield harness


async def group_pk(bot: BotHarness) -> int:
    async with bot.app.db.transaction() as session:
        return (await chat_service.get_chat(session, GROUP)).id


def last(emulator: BotAPIEmulator, chat_id: int) -> dict:
    return emulator.sent_messages(chat_id)[-1]


def button_data(message: dict, text_part: str) -> str:
    for row in message["reply_markup"]["inline_keyboard"]:
        for button in row:
            if text_part in button["text"]:
                return button["callback_data"]
    raise AssertionError(f"no button with {text_part!r} in {message['reply_markup']}")


async def press(emulator, bot, chat_id: int, user_id: int, text_part: str, message: dict | None = None) -> None:
    message = message or last(emulator, chat_id)
    emulator.press_button(chat_id, user_id, message["message_id"], button_data(message, text_part))
    await bot.settle()


async def say(emulator, bot, user_id: int, text: str) -> None:
    emulator.send_message(user_id, user_id, text)
    await bot.settle()


async def identity_of(bot: BotHarness, user_id: int) -> Identity | None:
    async with bot.app.db.transaction() as session:
        return await session.get(Identity, user_id)


async def bind_group_to_a_branch_with_two_party_groups(bot: BotHarness) -> None:
    async with bot.app.db.transaction() as session:
        branch = Unit(name="第一支部", kind="branch")
        session.add(branch)
        await session.flush()
        session.add_all(
            [
                Unit(name="一车间党小组", kind="group", parent_id=branch.id),
                Unit(name="二车间党小组", kind="group", parent_id=branch.id),
            ]
        )
        chat = await chat_service.get_chat(session, GROUP)
        chat.unit_id = branch.id


async def declare(emulator, bot, user_id: int, name: str = "郑小红", contact: str | None = "13800000000") -> None:
    await say(emulator, bot, user_id, f"/start declare_{await group_pk(bot)}")
    assert "真实姓名" in last(emulator, user_id)["text"]
    await say(emulator, bot, user_id, name)
    await press(emulator, bot, user_id, user_id, "正式党员")
    await say(emulator, bot, user_id, "总装车间班组长")
    await say(emulator, bot, user_id, "带头攻坚，安全生产零事故")
    await say(emulator, bot, user_id, "家电维修")
    await press(emulator, bot, user_id, user_id, "跳过")  # available times
    if contact:
        await say(emulator, bot, user_id, contact)
        await press(emulator, bot, user_id, user_id, "仅支部委员可见")
    else:
        await press(emulator, bot, user_id, user_id, "跳过")
    await press(emulator, bot, user_id, user_id, "否")  # not a floating member
    assert "请核对" in last(emulator, user_id)["text"]
    await press(emulator, bot, user_id, user_id, "提交")


async def test_declare_verify_and_show_card(emulator, bot) -> None:
    invitation = emulator.sent_messages(GROUP)[0]
    assert invitation["reply_markup"]["inline_keyboard"][0][0]["url"].endswith(f"start=declare_{await group_pk(bot)}")

    await declare(emulator, bot, MEMBER)
    assert "已提交" in last(emulator, MEMBER)["text"]
    assert (await identity_of(bot, MEMBER)).status == "pending"

    review = last(emulator, DEPUTY)
    assert "郑小红" in review["text"] and "13800000000" in review["text"] and "智造园第一支部" in review["text"]
    await press(emulator, bot, DEPUTY, DEPUTY, "通过", review)
    identity = await identity_of(bot, MEMBER)
    assert identity.status == "verified" and identity.reviewed_by == DEPUTY
    assert "已通过" in emulator.message(DEPUTY, review["message_id"])["text"]

    assert "通过审核" in last(emulator, MEMBER)["text"]
    await press(emulator, bot, MEMBER, MEMBER, "在群里展示")
    card = last(emulator, GROUP)["text"]
    assert "郑小红" in card and "总装车间班组长" in card and "正式党员" in card
    assert "13800000000" not in card  # contact is for the committee only

    # /whois: members see the public card, the committee also the contact.
    spoken = emulator.send_message(GROUP, MEMBER, "大家好")
    emulator.send_message(GROUP, OTHER, "/whois", reply_to_message_id=spoken["message"]["message_id"])
    await bot.settle()
    assert "郑小红" in last(emulator, GROUP)["text"] and "13800000000" not in last(emulator, GROUP)["text"]
    emulator.send_message(GROUP, DEPUTY, "/whois", reply_to_message_id=spoken["message"]["message_id"])
    await bot.settle()
    assert "13800000000" in last(emulator, GROUP)["text"]

    # A second reviewer's late press changes nothing.
    emulator.press_button(DEPUTY, DEPUTY, review["message_id"], button_data(review, "驳回"), forged=True)
    await bot.settle()
    assert "其他委员" in emulator.calls_of("answerCallbackQuery")[-1].params["text"]
    assert (await identity_of(bot, MEMBER)).status == "verified"


async def test_reject_with_a_typed_reason_and_with_a_preset(emulator, bot) -> None:
    await declare(emulator, bot, MEMBER, contact=None)
    review = last(emulator, DEPUTY)
    await press(emulator, bot, DEPUTY, DEPUTY, "驳回", review)
    assert "驳回原因" in last(emulator, DEPUTY)["text"]
    await say(emulator, bot, DEPUTY, "请填写<完整>的岗位")
    identity = await identity_of(bot, MEMBER)
    assert identity.status == "rejected" and identity.reject_reason == "请填写<完整>的岗位"
    told = last(emulator, MEMBER)
    assert "请填写<完整>的岗位" in told["text"]

    # The member corrects and submits again; this time a preset reason.
    await press(emulator, bot, MEMBER, MEMBER, "重新提交", told)
    for _ in range(4):  # keep name, type is a button, keep duty, keep pledge
        current = last(emulator, MEMBER)
        await press(
            emulator,
            bot,
            MEMBER,
            MEMBER,
            "保持不变" if "保持不变" in json.dumps(current, ensure_ascii=False) else "正式党员",
        )
    while "请核对" not in last(emulator, MEMBER)["text"]:
        await press(
            emulator,
            bot,
            MEMBER,
            MEMBER,
            "保持不变"
            if "保持不变" in json.dumps(last(emulator, MEMBER), ensure_ascii=False)
            else "跳过"
            if "跳过" in json.dumps(last(emulator, MEMBER), ensure_ascii=False)
            else "否",
        )
    await press(emulator, bot, MEMBER, MEMBER, "提交")
    assert (await identity_of(bot, MEMBER)).status == "pending"
    review = last(emulator, DEPUTY)
    await press(emulator, bot, DEPUTY, DEPUTY, "驳回", review)
    await press(emulator, bot, DEPUTY, DEPUTY, "非本支部成员")
    identity = await identity_of(bot, MEMBER)
    assert identity.status == "rejected" and identity.reject_reason == "非本支部成员"


async def test_form_survives_a_restart_can_be_resumed_and_cancelled(emulator, bot, database_url) -> None:
    await say(emulator, bot, MEMBER, f"/start declare_{await group_pk(bot)}")
    await say(emulator, bot, MEMBER, "郑小红")
    type_prompt = last(emulator, MEMBER)
    assert "身份" in type_prompt["text"]

    await bot.stop()
    async with BotHarness(emulator, database_url) as restarted:
        await say(emulator, restarted, MEMBER, f"/start declare_{await group_pk(restarted)}")
        resumed = last(emulator, MEMBER)
        assert "未完成" in resumed["text"] and "身份" in resumed["text"]
        await press(emulator, restarted, MEMBER, MEMBER, "预备党员", resumed)
        assert "亮职责" in last(emulator, MEMBER)["text"]

        # A button from an earlier step is stale now and changes nothing.
        emulator.press_button(MEMBER, MEMBER, type_prompt["message_id"], button_data(type_prompt, "正式党员"))
        await restarted.settle()
        assert "失效" in emulator.calls_of("answerCallbackQuery")[-1].params["text"]

        await press(emulator, restarted, MEMBER, MEMBER, "取消")
        assert "已取消" in last(emulator, MEMBER)["text"]
        async with restarted.app.db.transaction() as session:
            assert await session.get(IdentityDraft, MEMBER) is None
        await say(emulator, restarted, MEMBER, "总装车间")
        assert "/declare" in last(emulator, MEMBER)["text"]


@pytest.mark.parametrize(
    ("text", "complaint"),
    [("郑" * 40, "2–32"), ("1", "2–32"), ("12345", "真实姓名"), ("郑\x07红", "控制字符")],
)
async def test_bad_answers_are_explained_and_the_form_stays(emulator, bot, text, complaint) -> None:
    await say(emulator, bot, MEMBER, f"/start declare_{await group_pk(bot)}")
    await say(emulator, bot, MEMBER, text)
    assert complaint in last(emulator, MEMBER)["text"]
    async with bot.app.db.transaction() as session:
        assert (await session.get(IdentityDraft, MEMBER)).step == "name"


async def test_units_below_the_group_are_offered_as_buttons(emulator, bot) -> None:
    await bind_group_to_a_branch_with_two_party_groups(bot)
    await say(emulator, bot, MEMBER, f"/start declare_{await group_pk(bot)}")
    await say(emulator, bot, MEMBER, "郑小红")
    unit_prompt = last(emulator, MEMBER)
    assert "党小组" in unit_prompt["text"]
    await press(emulator, bot, MEMBER, MEMBER, "二车间党小组", unit_prompt)
    async with bot.app.db.transaction() as session:
        draft = await session.get(IdentityDraft, MEMBER)
        chosen = json.loads(draft.data)["unit_id"]
        assert (await session.get(Unit, chosen)).name == "二车间党小组"


async def test_forged_and_foreign_buttons_are_refused(emulator, bot) -> None:
    await declare(emulator, bot, MEMBER)
    review = last(emulator, DEPUTY)
    approve = button_data(review, "通过")

    # A member who is not on the committee presses the verdict button (forged into their own chat).
    presses = [
        emulator.press_button(OTHER, OTHER, 1, approve, forged=True),
        emulator.press_button(OTHER, OTHER, 1, f"idv:1:{OTHER + 999}", forged=True),  # unknown member
        emulator.press_button(MEMBER, MEMBER, 1, "idf:type:superuser", forged=True),  # not a choice on offer
        emulator.press_button(MEMBER, MEMBER, 1, "idc:explode", forged=True),
    ]
    await bot.settle()
    answers = {
        call.params["callback_query_id"]: call.params.get("text", "")
        for call in emulator.calls_of("answerCallbackQuery")
    }
    foreign, unknown, not_offered, nonsense = (answers[press["callback_query"]["id"]] for press in presses)
    assert "committee" in foreign.lower() and unknown and not_offered and nonsense
    assert (await identity_of(bot, MEMBER)).status == "pending"


async def test_names_with_html_are_escaped_everywhere(emulator, bot) -> None:
    await declare(emulator, bot, MEMBER, name="<b>郑</b>&小红")
    assert "<b>郑</b>&小红" in last(emulator, DEPUTY)["text"]
    await press(emulator, bot, DEPUTY, DEPUTY, "通过")
    await press(emulator, bot, MEMBER, MEMBER, "在群里展示")
    assert "<b>郑</b>&小红" in last(emulator, GROUP)["text"]


async def test_roster_and_reminding_the_undeclared(emulator, bot) -> None:
    await declare(emulator, bot, MEMBER)
    emulator.send_message(GROUP, OTHER, "hello")
    emulator.send_message(OTHER, OTHER, "/start")  # Olivia can be reached in private
    emulator.member_joined(GROUP, 5010)
    emulator.member_joined(GROUP, 5011)
    emulator.member_left(GROUP, 5011)
    await bot.settle()
    welcome = last(emulator, GROUP)
    assert "欢迎" in welcome["text"] and "declare_" in welcome["reply_markup"]["inline_keyboard"][0][0]["url"]

    emulator.send_message(GROUP, MEMBER, "/roster")
    await bot.settle()
    assert "仅限支部委员" in last(emulator, GROUP)["text"]
    emulator.send_message(GROUP, DEPUTY, "/roster")
    await bot.settle()
    roster = last(emulator, GROUP)
    assert "待审核 1" in roster["text"] and "未登记 4" in roster["text"] and "已退群 1" in roster["text"]
    assert "郑小红" in roster["text"] and "Olivia" in roster["text"]

    emulator.press_button(GROUP, MEMBER, roster["message_id"], button_data(roster, "提醒"))
    await bot.settle()
    assert "仅限支部委员" in emulator.calls_of("answerCallbackQuery")[-1].params["text"]

    before = len(emulator.sent_messages(GROUP))
    emulator.press_button(GROUP, DEPUTY, roster["message_id"], button_data(roster, "提醒"))
    await bot.settle()
    nudge = emulator.sent_messages(GROUP)[before]
    mentioned = {entity["user"]["id"] for entity in nudge["entities"] if entity["type"] == "text_mention"}
    assert mentioned == {SECRETARY, DEPUTY, OTHER, 5010}  # not the declared member, not the one who left
    assert "Olivia" in nudge["text"]
    private = [m for m in emulator.sent_messages(OTHER) if m["text"].startswith("📣")]
    quiet = chat_service.is_quiet_time(
        chat_service.GroupSettings("zh", "Asia/Shanghai", "22:00", "07:00"), bot.app.clock.now()
    )
    assert len(private) == (0 if quiet else 1)

    emulator.press_button(GROUP, DEPUTY, roster["message_id"], button_data(roster, "提醒"))
    await bot.settle()
    assert "分钟后" in emulator.calls_of("answerCallbackQuery")[-1].params["text"]

    await press(emulator, bot, GROUP, DEPUTY, "正式党员", roster)
    filtered = emulator.message(GROUP, roster["message_id"])["text"]
    assert "郑小红" in filtered and "Olivia" not in filtered
    emulator.press_button(GROUP, DEPUTY, roster["message_id"], "ros:full:999", forged=True)  # not a unit of ours
    await bot.settle()
    assert "失效" in emulator.calls_of("answerCallbackQuery")[-1].params["text"]


async def test_roster_filters_by_the_units_below_the_group(emulator, bot) -> None:
    await bind_group_to_a_branch_with_two_party_groups(bot)
    await say(emulator, bot, MEMBER, f"/start declare_{await group_pk(bot)}")
    await say(emulator, bot, MEMBER, "郑小红")
    await press(emulator, bot, MEMBER, MEMBER, "二车间党小组")
    await press(emulator, bot, MEMBER, MEMBER, "正式党员")
    for answer in ("总装车间班组长", "带头攻坚"):
        await say(emulator, bot, MEMBER, answer)
    for choice in ("跳过", "跳过", "跳过", "否", "提交"):
        await press(emulator, bot, MEMBER, MEMBER, choice)
    emulator.send_message(GROUP, DEPUTY, "/roster")
    await bot.settle()
    roster = last(emulator, GROUP)
    await press(emulator, bot, GROUP, DEPUTY, "一车间党小组", roster)
    assert "郑小红" not in emulator.message(GROUP, roster["message_id"])["text"]
    await press(emulator, bot, GROUP, DEPUTY, "二车间党小组", emulator.message(GROUP, roster["message_id"]))
    assert "郑小红" in emulator.message(GROUP, roster["message_id"])["text"]


async def test_mydata_and_forgetme(emulator, bot) -> None:
    await declare(emulator, bot, MEMBER)
    await say(emulator, bot, MEMBER, "/mydata")
    documents = emulator.calls_of("sendDocument", chat_id=MEMBER)
    assert len(documents) == 1
    [(filename, content)] = documents[0].files.values()
    exported = json.loads(content)
    assert exported["identity"]["real_name"] == "郑小红" and exported["user"]["id"] == MEMBER
    assert any(group["group"] == "智造园第一支部" for group in exported["groups"])

    emulator.send_message(GROUP, MEMBER, "/forgetme")
    await bot.settle()
    assert "私聊" in last(emulator, GROUP)["text"]

    await say(emulator, bot, MEMBER, "/forgetme")
    await press(emulator, bot, MEMBER, MEMBER, "确认删除")
    assert "已删除" in last(emulator, MEMBER)["text"]
    async with bot.app.db.transaction() as session:
        assert await session.get(Identity, MEMBER) is None
        user = (await session.execute(select(User).where(User.id == MEMBER))).scalar_one()
        assert user.username is None and user.last_name is None
