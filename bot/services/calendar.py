"""A meeting as an iCalendar (.ics) file that a phone's calendar imports, with an alarm before it.

The event's UID stays the same for a meeting and its SEQUENCE follows the meeting's edits, so importing
the file again after a change updates the entry instead of adding a second one.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from icalendar import Alarm, Calendar, Event

from storage.models import Meeting

PRODUCT_ID = "-//Branch Assistant//Meetings//ZH"


def meeting_ics(meeting: Meeting, *, title: str, description: str, now: datetime, alarm_before: timedelta) -> bytes:
    calendar = Calendar()
    calendar.add("prodid", PRODUCT_ID)
    calendar.add("version", "2.0")
    calendar.add("method", "PUBLISH")  # a cancelled meeting is published with STATUS:CANCELLED
    event = Event()
    event.add("uid", f"meeting-{meeting.id}@branch-assistant")
    event.add("dtstamp", now)
    event.add("dtstart", meeting.starts_at)
    event.add("dtend", meeting.ends_at)
    event.add("summary", title)
    event.add("location", meeting.place)
    event.add("description", description)
    event.add("sequence", meeting.version)
    event.add("status", "CANCELLED" if meeting.status == "cancelled" else "CONFIRMED")
    alarm = Alarm()
    alarm.add("action", "DISPLAY")
    alarm.add("description", title)
    alarm.add("trigger", -alarm_before)
    event.add_component(alarm)
    calendar.add_component(event)
    return calendar.to_ical()
