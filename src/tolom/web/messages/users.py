"""The texts of the users pages (list, new user, one user, the password shown once), in
Russian (the default), Kyrgyz and English."""

from __future__ import annotations

RU: dict[str, str] = {
    "users.title": "Пользователи",
    "users.intro": "Сотрудники, которые работают в Tolom. Пароли хранятся только в виде хеша; "
    "после нескольких неудачных попыток входа пользователь блокируется на время.",
    "users.caption": "Пользователи по имени входа",
    "users.username": "Имя для входа",
    "users.display_name": "Имя",
    "users.role": "Роль",
    "users.language": "Язык страниц",
    "users.state": "Состояние",
    "users.state.active": "работает",
    "users.state.disabled": "отключён",
    "users.last_login": "Последний вход",
    "users.locked_until": "Вход заблокирован до",
    "users.unknown": "нет сведений",
    "users.not_locked": "нет",
    "users.created_at": "Создан",
    "users.new_link": "Новый пользователь",
    "users.empty": "Пользователей нет.",
    "users.not_found.title": "Пользователь не найден",
    "users.not_found.text": "Пользователя с таким именем нет.",
    "users.back": "← Ко всем пользователям",
    "users.new.title": "Новый пользователь",
    "users.new.username_hint": "Строчные латинские буквы, цифры, «.», «-», «_»; от 2 до 64 "
    "знаков, первая — буква. Это имя вводят при входе, изменить его потом нельзя.",
    "users.new.password": "Пароль",
    "users.new.repeat": "Пароль ещё раз",
    "users.new.password_hint": "Оставьте оба поля пустыми, и Tolom придумает пароль и покажет "
    "его один раз. Свой пароль — не короче {min} символов.",
    "users.new.submit": "Создать пользователя",
    "users.one.title": "Пользователь {username}",
    "users.done.created": "Пользователь создан.",
    "users.done.changed": "Изменения сохранены. Если роль изменилась, входы пользователя "
    "завершены.",
    "users.done.disabled": "Пользователь отключён, его входы завершены.",
    "users.done.enabled": "Пользователь снова может входить.",
    "users.done.unlocked": "Блокировка входа снята.",
    "users.done.unchanged": "Ничего не изменилось.",
    "users.change.heading": "Роль и язык",
    "users.change.hint": "При смене роли все входы пользователя завершаются: он войдёт заново "
    "уже с новой ролью.",
    "users.change.submit": "Сохранить",
    "users.access.heading": "Доступ",
    "users.disable.hint": "Отключённый пользователь не может войти; его текущие входы "
    "завершаются сразу. Записи о его действиях остаются в журнале.",
    "users.disable.submit": "Отключить пользователя",
    "users.enable.hint": "Пользователь отключён и не может войти.",
    "users.enable.submit": "Включить пользователя",
    "users.reset.heading": "Новый пароль",
    "users.reset.hint": "Tolom придумает новый пароль и покажет его один раз. Блокировка входа "
    "снимется, текущие входы пользователя завершатся.",
    "users.reset.submit": "Выдать новый пароль",
    "users.unlock.heading": "Блокировка входа",
    "users.unlock.hint": "После неудачных попыток вход заблокирован до {until}.",
    "users.unlock.submit": "Снять блокировку",
    "users.own": "Это ваша учётная запись: свою роль менять и себя отключать нельзя, а пароль "
    "меняется на странице «Сменить пароль».",
    "users.audit_link": "Действия с этим пользователем в журнале",
    "users.secret.title": "Пароль пользователя {username}",
    "users.secret.created": "Пользователь создан.",
    "users.secret.reset": "Новый пароль выдан; прежние входы пользователя завершены.",
    "users.secret.warning": "Пароль показан один раз: Tolom хранит только его хеш и показать "
    "его снова не сможет. Передайте его пользователю лично и попросите сменить после входа.",
    "users.secret.password": "Пароль",
    "users.secret.done": "Пароль передан — к пользователю",
    "users.error.username.format": "Имя для входа: строчные латинские буквы, цифры, «.», «-», "
    "«_»; от 2 до 64 знаков, первая — буква.",
    "users.error.username.taken": "Пользователь с таким именем уже есть.",
    "users.error.role.unknown": "Неизвестная роль.",
    "users.error.language.unknown": "Неизвестный язык.",
    "users.error.display_name.empty": "Укажите имя.",
    "users.error.display_name.invalid": "Имя должно быть не длиннее {max} знаков и без "
    "управляющих символов.",
    "users.error.password.short": "Пароль должен быть не короче {min} символов.",
    "users.error.password.long": "Пароль должен быть не длиннее 256 символов.",
    "users.error.mismatch": "Пароли не совпадают.",
    "users.error.user.not_found": "Такого пользователя нет.",
    "users.error.last_admin": "Это последний активный администратор: сначала назначьте "
    "администратором кого-то ещё. Ничего не изменено.",
    "users.error.own_account": "Свою роль менять и себя отключать нельзя, свой пароль меняют на "
    "странице «Сменить пароль». Ничего не изменено.",
    "users.error.other": "Изменение не выполнено.",
}

KY: dict[str, str] = {
    "users.title": "Колдонуучулар",
    "users.intro": "Tolom менен иштеген кызматкерлер. Сырсөздөр хеш түрүндө гана сакталат; "
    "бир нече жолу ийгиликсиз киргенден кийин колдонуучу убактылуу бөгөттөлөт.",
    "users.caption": "Колдонуучулар кирүү аты боюнча",
    "users.username": "Кирүү аты",
    "users.display_name": "Аты",
    "users.role": "Ролу",
    "users.language": "Барактардын тили",
    "users.state": "Абалы",
    "users.state.active": "иштейт",
    "users.state.disabled": "өчүрүлгөн",
    "users.last_login": "Акыркы кирүү",
    "users.locked_until": "Кирүү бөгөттөлгөн убакыт",
    "users.unknown": "маалымат жок",
    "users.not_locked": "жок",
    "users.created_at": "Түзүлгөн",
    "users.new_link": "Жаңы колдонуучу",
    "users.empty": "Колдонуучулар жок.",
    "users.not_found.title": "Колдонуучу табылган жок",
    "users.not_found.text": "Мындай аттагы колдонуучу жок.",
    "users.back": "← Бардык колдонуучуларга",
    "users.new.title": "Жаңы колдонуучу",
    "users.new.username_hint": "Кичине латын тамгалары, сандар, «.», «-», «_»; 2ден 64кө чейин "
    "белги, биринчиси — тамга. Бул ат кирүүдө терилет, кийин аны өзгөртүүгө болбойт.",
    "users.new.password": "Сырсөз",
    "users.new.repeat": "Сырсөз дагы бир жолу",
    "users.new.password_hint": "Эки талааны тең бош калтырсаңыз, Tolom сырсөз ойлоп таап, аны "
    "бир жолу көрсөтөт. Өзүңүз терген сырсөз {min} белгиден кыска болбошу керек.",
    "users.new.submit": "Колдонуучу түзүү",
    "users.one.title": "Колдонуучу {username}",
    "users.done.created": "Колдонуучу түзүлдү.",
    "users.done.changed": "Өзгөртүүлөр сакталды. Ролу өзгөрсө, колдонуучунун кирүүлөрү аяктады.",
    "users.done.disabled": "Колдонуучу өчүрүлдү, анын кирүүлөрү аяктады.",
    "users.done.enabled": "Колдонуучу кайра кире алат.",
    "users.done.unlocked": "Кирүү бөгөтү алынды.",
    "users.done.unchanged": "Эч нерсе өзгөргөн жок.",
    "users.change.heading": "Ролу жана тили",
    "users.change.hint": "Ролу өзгөргөндө колдонуучунун бардык кирүүлөрү аяктайт: ал жаңы ролу "
    "менен кайра кирет.",
    "users.change.submit": "Сактоо",
    "users.access.heading": "Кирүү укугу",
    "users.disable.hint": "Өчүрүлгөн колдонуучу кире албайт; анын учурдагы кирүүлөрү дароо "
    "аяктайт. Анын аракеттери журналда калат.",
    "users.disable.submit": "Колдонуучуну өчүрүү",
    "users.enable.hint": "Колдонуучу өчүрүлгөн жана кире албайт.",
    "users.enable.submit": "Колдонуучуну күйгүзүү",
    "users.reset.heading": "Жаңы сырсөз",
    "users.reset.hint": "Tolom жаңы сырсөз ойлоп таап, аны бир жолу көрсөтөт. Кирүү бөгөтү "
    "алынат, колдонуучунун учурдагы кирүүлөрү аяктайт.",
    "users.reset.submit": "Жаңы сырсөз берүү",
    "users.unlock.heading": "Кирүү бөгөтү",
    "users.unlock.hint": "Ийгиликсиз аракеттерден кийин кирүү {until} чейин бөгөттөлгөн.",
    "users.unlock.submit": "Бөгөттү алуу",
    "users.own": "Бул сиздин эсептик жазууңуз: өз ролуңузду өзгөртүүгө жана өзүңүздү өчүрүүгө "
    "болбойт, сырсөз «Сырсөздү өзгөртүү» барагында алмаштырылат.",
    "users.audit_link": "Бул колдонуучу боюнча журналдагы аракеттер",
    "users.secret.title": "{username} колдонуучусунун сырсөзү",
    "users.secret.created": "Колдонуучу түзүлдү.",
    "users.secret.reset": "Жаңы сырсөз берилди; колдонуучунун мурунку кирүүлөрү аяктады.",
    "users.secret.warning": "Сырсөз бир гана жолу көрсөтүлөт: Tolom анын хешин гана сактайт "
    "жана аны кайра көрсөтө албайт. Аны колдонуучуга өзүңүз бериңиз жана киргенден кийин "
    "алмаштырууну сураныңыз.",
    "users.secret.password": "Сырсөз",
    "users.secret.done": "Сырсөз берилди — колдонуучуга",
    "users.error.username.format": "Кирүү аты: кичине латын тамгалары, сандар, «.», «-», «_»; "
    "2ден 64кө чейин белги, биринчиси — тамга.",
    "users.error.username.taken": "Мындай аттагы колдонуучу бар.",
    "users.error.role.unknown": "Белгисиз ролу.",
    "users.error.language.unknown": "Белгисиз тил.",
    "users.error.display_name.empty": "Атын жазыңыз.",
    "users.error.display_name.invalid": "Аты {max} белгиден узун болбошу жана башкаруучу "
    "белгилерсиз болушу керек.",
    "users.error.password.short": "Сырсөз {min} белгиден кыска болбошу керек.",
    "users.error.password.long": "Сырсөз 256 белгиден узун болбошу керек.",
    "users.error.mismatch": "Сырсөздөр дал келбейт.",
    "users.error.user.not_found": "Мындай колдонуучу жок.",
    "users.error.last_admin": "Бул акыркы активдүү администратор: адегенде башка бирөөнү "
    "администратор кылыңыз. Эч нерсе өзгөргөн жок.",
    "users.error.own_account": "Өз ролуңузду өзгөртүүгө жана өзүңүздү өчүрүүгө болбойт, өз "
    "сырсөзүңүз «Сырсөздү өзгөртүү» барагында алмаштырылат. Эч нерсе өзгөргөн жок.",
    "users.error.other": "Өзгөртүү аткарылган жок.",
}

EN: dict[str, str] = {
    "users.title": "Users",
    "users.intro": "The staff who work in Tolom. Passwords are stored only as hashes; after "
    "several failed logins a user is locked for a while.",
    "users.caption": "Users by login name",
    "users.username": "Login name",
    "users.display_name": "Name",
    "users.role": "Role",
    "users.language": "Page language",
    "users.state": "State",
    "users.state.active": "active",
    "users.state.disabled": "disabled",
    "users.last_login": "Last login",
    "users.locked_until": "Login locked until",
    "users.unknown": "not known",
    "users.not_locked": "no",
    "users.created_at": "Created",
    "users.new_link": "New user",
    "users.empty": "There are no users.",
    "users.not_found.title": "User not found",
    "users.not_found.text": "There is no user with this name.",
    "users.back": "← All users",
    "users.new.title": "New user",
    "users.new.username_hint": "Lowercase Latin letters, digits, “.”, “-”, “_”; 2 to 64 "
    "characters, starting with a letter. It is typed to log in and cannot be changed later.",
    "users.new.password": "Password",
    "users.new.repeat": "Password again",
    "users.new.password_hint": "Leave both fields empty and Tolom makes up a password and "
    "shows it once. A password you type has at least {min} characters.",
    "users.new.submit": "Create user",
    "users.one.title": "User {username}",
    "users.done.created": "User created.",
    "users.done.changed": "Changes saved. If the role changed, the user's sessions have ended.",
    "users.done.disabled": "User disabled; their sessions have ended.",
    "users.done.enabled": "The user can log in again.",
    "users.done.unlocked": "Login lock lifted.",
    "users.done.unchanged": "Nothing changed.",
    "users.change.heading": "Role and language",
    "users.change.hint": "A new role ends all of the user's sessions: they log in again with "
    "the new role.",
    "users.change.submit": "Save",
    "users.access.heading": "Access",
    "users.disable.hint": "A disabled user cannot log in; their current sessions end at once. "
    "Their actions stay in the audit log.",
    "users.disable.submit": "Disable user",
    "users.enable.hint": "The user is disabled and cannot log in.",
    "users.enable.submit": "Enable user",
    "users.reset.heading": "New password",
    "users.reset.hint": "Tolom makes up a new password and shows it once. The login lock is "
    "lifted and the user's current sessions end.",
    "users.reset.submit": "Issue a new password",
    "users.unlock.heading": "Login lock",
    "users.unlock.hint": "After failed attempts, login is locked until {until}.",
    "users.unlock.submit": "Lift the lock",
    "users.own": "This is your own account: you cannot change your own role or disable "
    "yourself, and your password is changed on the “Change password” page.",
    "users.audit_link": "This user's entries in the audit log",
    "users.secret.title": "Password of {username}",
    "users.secret.created": "User created.",
    "users.secret.reset": "New password issued; the user's earlier sessions have ended.",
    "users.secret.warning": "The password is shown once: Tolom keeps only its hash and cannot "
    "show it again. Hand it to the user in person and ask them to change it after logging in.",
    "users.secret.password": "Password",
    "users.secret.done": "Password handed over — back to the user",
    "users.error.username.format": "Login name: lowercase Latin letters, digits, “.”, “-”, "
    "“_”; 2 to 64 characters, starting with a letter.",
    "users.error.username.taken": "A user with this name already exists.",
    "users.error.role.unknown": "Unknown role.",
    "users.error.language.unknown": "Unknown language.",
    "users.error.display_name.empty": "Enter a name.",
    "users.error.display_name.invalid": "The name must be at most {max} characters, without "
    "control characters.",
    "users.error.password.short": "The password must have at least {min} characters.",
    "users.error.password.long": "The password must have at most 256 characters.",
    "users.error.mismatch": "The passwords do not match.",
    "users.error.user.not_found": "There is no such user.",
    "users.error.last_admin": "This is the last active administrator: make someone else an "
    "administrator first. Nothing was changed.",
    "users.error.own_account": "You cannot change your own role or disable yourself; your own "
    "password is changed on the “Change password” page. Nothing was changed.",
    "users.error.other": "The change was not made.",
}
